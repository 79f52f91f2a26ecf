//! `essctl up` pulling an image from a real registry with the credentials of the deployment
//! file's `registries:`: Debian's `docker-registry` (the CNCF distribution registry) on
//! loopback with htpasswd authentication, holding an image made of the `ess-standin`
//! stand-in image and one more layer of random bytes, under a unique tag, and absent locally.
//! Element Admin runs that image; every other service the local stand-in and
//! router images, as in tests/orchestrator_docker.rs. The password comes from a file
//! (`{file: ...}`) and the username from the environment (`{env: ...}`), as an operator
//! would keep them out of the deployment file.
//!
//! Skipped when `docker-registry` or `htpasswd` is missing, except under CI (which installs
//! them). The registry process, its image tags, the stack (containers, networks, volumes) and
//! the temporary directories are removed when a test ends, also when it fails.

mod orchestrator_support;

use std::path::Path;
use std::process::Output;

use ess_suite::docker::{docker, image_present, images};
use ess_suite::registry::Registry;
use orchestrator_support::stack::Stack;
use orchestrator_support::{stderr, stdout};

const USERNAME_VARIABLE: &str = "ESS_TEST_REGISTRY_USERNAME";

/// The size of the layer the pushed image adds to the stand-in (random, so incompressible).
const PAYLOAD: usize = 8_000_000;

/// A stand-in stack without readers whose Element Admin runs `image`, with the registry's
/// credentials in `registries:` (username from the environment, password from `password`
/// written to a file beside the deployment file), or none when `password` is `None`.
fn stack_pulling(registry: &Registry, image: &str, password: Option<&str>) -> Stack {
    let stack = Stack::new(None);
    let registries = match password {
        Some(password) => {
            let file = stack.dir.path().join("registry-password");
            // One trailing newline, as `echo pw > file` leaves it: the file source drops it.
            std::fs::write(&file, format!("{password}\n")).unwrap();
            format!(
                "registries:\n  - server: {}\n    username: {{env: {USERNAME_VARIABLE}}}\n    \
                 password: {{file: {}}}\n",
                registry.address,
                file.display()
            )
        }
        None => String::new(),
    };
    let path = stack.write(0, &registries);
    let standin = format!("element_admin: {}\n", images().standin);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&standin), "{text}");
    std::fs::write(
        &path,
        text.replace(&standin, &format!("element_admin: {image}\n")),
    )
    .unwrap();
    stack
}

fn up(stack: &Stack, registry: &Registry, pull: &str) -> Output {
    stack.run_with_env(
        &["up", "--pull", pull, "--timeout", "60"],
        &[(USERNAME_VARIABLE, &registry.username)],
    )
}

/// Neither `secret` appears in anything essctl printed.
fn assert_not_printed(out: &Output, secrets: &[&str]) {
    let printed = format!("{}{}", stdout(out), stderr(out));
    for secret in secrets {
        assert!(
            !printed.contains(secret),
            "a registry password was printed:\n{printed}"
        );
    }
}

/// No file under `dir` contains `secret` (the rendered files, the secrets directory).
fn assert_not_stored(dir: &Path, secret: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_not_stored(&path, secret);
        } else if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(secret) || path.ends_with("registry-password"),
                "{} holds the registry password",
                path.display()
            );
        }
    }
}

/// A failed `up` whose last line is `essctl: error: pull of IMAGE failed: ...`: that line,
/// and all of stderr.
fn pull_failure(out: &Output, image: &str) -> (String, String) {
    assert!(
        !out.status.success(),
        "essctl up succeeded: {}",
        stdout(out)
    );
    let err = stderr(out);
    eprintln!("essctl up:\n{err}");
    let last = err.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.starts_with(&format!("essctl: error: pull of {image} failed: ")),
        "{err}"
    );
    (last, err)
}

#[test]
fn up_pulls_with_the_registry_credentials_of_the_deployment_file() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let image = registry.push_derived(&images().standin, "ess-standin-registry-test", PAYLOAD);
    assert!(!image_present(&image), "{image} must have to be pulled");
    let stack = stack_pulling(&registry, &image, Some(&registry.password));

    let out = up(&stack, &registry, "missing");
    let err = stderr(&out);
    eprintln!("essctl up:\n{err}");
    assert!(
        out.status.success(),
        "essctl up failed:\n{}{err}",
        stdout(&out)
    );
    assert_not_printed(&out, &[&registry.password]);
    // Only the missing image is pulled, with a line before and after.
    assert!(err.contains(&format!("pulling {image}\n")), "{err}");
    // The pushed layer was downloaded; the stand-in's own layers were there already.
    let pulled = err
        .lines()
        .find(|l| l.starts_with(&format!("pulled {image} (")))
        .unwrap_or_else(|| panic!("no `pulled {image} (...)` line: {err}"));
    assert!(
        pulled.contains(" already present, 8.0 MB downloaded, "),
        "{pulled}"
    );
    assert_eq!(err.matches("pulling ").count(), 1, "{err}");
    assert!(image_present(&image), "{image} was not pulled");

    // Element Admin runs the pulled image.
    let admin = stack.container("element-admin");
    assert_eq!(
        docker(&[
            "inspect",
            "--format",
            "{{.Config.Image}} {{.State.Status}}",
            &admin
        ]),
        format!("{image} running")
    );
    assert!(stdout(&out).contains("element-admin ("), "{}", stdout(&out));
    // Neither the containers nor the files essctl wrote hold the password.
    let inspect = docker(&["inspect", &admin]);
    assert!(!inspect.contains(&registry.password), "{inspect}");
    assert_not_stored(stack.dir.path(), &registry.password);

    // Present now: the next `up` pulls nothing and changes nothing. (`--pull always` would
    // also pull the local router and stand-in images, from Docker Hub.)
    let again = up(&stack, &registry, "missing");
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!stderr(&again).contains("pulling"), "{}", stderr(&again));
    assert!(
        stdout(&again).starts_with("unchanged"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn wrong_or_missing_registry_credentials_fail_before_anything_is_created() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let image = registry.push_derived(&images().standin, "ess-standin-registry-test", PAYLOAD);
    let wrong = format!("{}-wrong", registry.password);
    let stack = stack_pulling(&registry, &image, Some(&wrong));

    let out = up(&stack, &registry, "missing");
    assert_not_printed(&out, &[&registry.password, &wrong]);
    let (last, err) = pull_failure(&out, &image);
    // The registry's answer, and where the credentials came from.
    assert!(last.contains("unauthorized"), "{err}");
    assert!(
        last.contains(&format!(
            "with the credentials of the registries: entry for {}",
            registry.address
        )),
        "{err}"
    );
    assert!(!image_present(&image));
    assert!(stack.containers().is_empty(), "{:?}", stack.containers());
    assert!(stack.networks().is_empty(), "{:?}", stack.networks());
    assert!(stack.volumes().is_empty(), "{:?}", stack.volumes());

    // Without a `registries:` entry the daemon has no credentials to send.
    let stack = stack_pulling(&registry, &image, None);
    let out = up(&stack, &registry, "missing");
    let (last, err) = pull_failure(&out, &image);
    assert!(
        last.contains(&format!("no registries: entry for {}", registry.address)),
        "{err}"
    );
    assert!(stack.containers().is_empty(), "{:?}", stack.containers());
    assert!(stack.networks().is_empty(), "{:?}", stack.networks());
}
