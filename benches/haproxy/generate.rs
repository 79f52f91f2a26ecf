//! `ess-haproxy-config`: writes the HAProxy 2.6 configuration that the matrix-stack chart
//! would render for the deployment an ess-router configuration describes, so tests and
//! benchmarks can run the two side by side from one file.

#![forbid(unsafe_code)]

mod chart;
mod input;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: ess-haproxy-config --config ROUTER_YAML --out DIR

Writes DIR/haproxy.cfg and the files it refers to (route maps, 429 page, documents);
run it with: haproxy -f DIR/haproxy.cfg";

fn main() -> ExitCode {
    match run() {
        Ok(config) => {
            eprintln!("wrote {}", config.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ess-haproxy-config: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<PathBuf, String> {
    let mut config = None;
    let mut out = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.to_str() {
            Some("--config") => &mut config,
            Some("--out") => &mut out,
            Some("-h" | "--help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}")),
        };
        *slot = Some(PathBuf::from(
            args.next().ok_or(format!("{arg:?} needs a value"))?,
        ));
    }
    let (Some(config), Some(out)) = (config, out) else {
        return Err(format!("--config and --out are required\n{USAGE}"));
    };

    let input = input::load(&config)?;
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    // HAProxy resolves the files it reads from the directory it was started in, so every
    // reference in haproxy.cfg is absolute.
    let out = out
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", out.display()))?;

    for (name, contents) in render::render(&input, &out) {
        let path = out.join(name);
        std::fs::write(&path, contents)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(out.join("haproxy.cfg"))
}
