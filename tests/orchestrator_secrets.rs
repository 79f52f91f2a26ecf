//! `essctl secrets`: the generated set in the chart's formats, read back by independent
//! tools; never rewritten; owner-only; reported by name only.

mod orchestrator_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use orchestrator_support::{essctl, one_line_error, stdout, write_deployment};

const RAND32: [&str; 8] = [
    "POSTGRES_ADMIN_PASSWORD",
    "POSTGRES_SYNAPSE_PASSWORD",
    "POSTGRES_MATRIX_AUTHENTICATION_SERVICE_PASSWORD",
    "SYNAPSE_MACAROON",
    "SYNAPSE_REGISTRATION_SHARED_SECRET",
    "MAS_SYNAPSE_SHARED_SECRET",
    "ELEMENT_CALL_LIVEKIT_SECRET",
    "ADMIN_USER_PASSWORD",
];
const ALL_GENERATED: usize = 12;

fn run_secrets(config: &Path) -> String {
    let out = essctl(&["secrets", "--config", config.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "essctl secrets failed: {}",
        orchestrator_support::stderr(&out)
    );
    stdout(&out)
}

/// Contents and modification time of every file in `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let name = entry.file_name().into_string().unwrap();
            (
                name,
                (fs::read(entry.path()).unwrap(), meta.modified().unwrap()),
            )
        })
        .collect()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_generated_secret_has_the_charts_format_and_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(dir.path(), "");
    let report = run_secrets(&config);
    let secrets = dir.path().join("secrets");

    assert_eq!(
        report
            .lines()
            .filter(|l| l.starts_with("generated  "))
            .count(),
        ALL_GENERATED,
        "{report}"
    );
    for name in RAND32 {
        let value = fs::read(secrets.join(name)).unwrap();
        assert_eq!(value.len(), 32, "{name}");
        assert!(value.iter().all(u8::is_ascii_alphanumeric), "{name}");
        assert!(report.contains(&format!("generated  {name}\n")), "{report}");
        assert!(
            !report.contains(std::str::from_utf8(&value).unwrap()),
            "the report shows {name}"
        );
    }
    let encryption = fs::read(secrets.join("MAS_ENCRYPTION_SECRET")).unwrap();
    assert_eq!(encryption.len(), 64);
    assert!(encryption
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));

    // Distinct secrets are distinct values.
    let values: std::collections::BTreeSet<Vec<u8>> = RAND32
        .iter()
        .map(|n| fs::read(secrets.join(n)).unwrap())
        .collect();
    assert_eq!(values.len(), RAND32.len());
}

#[test]
fn openssl_reads_the_mas_keys_as_rsa_4096_and_p256_pkcs8_der() {
    let dir = tempfile::tempdir().unwrap();
    run_secrets(&write_deployment(dir.path(), ""));
    let secrets = dir.path().join("secrets");

    let rsa = secrets.join("MAS_RSA_PRIVATE_KEY");
    let text = openssl(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        rsa.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("Private-Key: (4096 bit"), "{text}");
    openssl(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        rsa.to_str().unwrap(),
        "-check",
        "-noout",
    ]);
    // PKCS#8 (not PKCS#1): the DER starts with a version and an AlgorithmIdentifier.
    let asn1 = openssl(&["asn1parse", "-inform", "DER", "-in", rsa.to_str().unwrap()]);
    assert!(asn1.contains("rsaEncryption"), "{asn1}");

    let ec = secrets.join("MAS_ECDSA_PRIME256V1_PRIVATE_KEY");
    let text = openssl(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        ec.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    let asn1 = openssl(&["asn1parse", "-inform", "DER", "-in", ec.to_str().unwrap()]);
    assert!(asn1.contains("id-ecPublicKey"), "{asn1}");
}

#[test]
fn the_synapse_signing_key_signs_and_verifies_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    run_secrets(&write_deployment(dir.path(), ""));
    let line = fs::read_to_string(dir.path().join("secrets/SYNAPSE_SIGNING_KEY")).unwrap();

    assert!(
        line.ends_with('\n') && line.lines().count() == 1,
        "{line:?}"
    );
    let fields: Vec<&str> = line.trim_end().split(' ').collect();
    assert_eq!(fields.len(), 3, "{line:?}");
    assert_eq!(fields[0], "ed25519");
    assert_ne!(fields[1], "0", "key id 0 is the chart's once-shared key id");
    assert!(fields[1].starts_with("a_"), "{line:?}");
    assert!(!fields[2].contains('='), "the seed is unpadded base64");
    let seed = STANDARD_NO_PAD.decode(fields[2]).unwrap();
    assert_eq!(seed.len(), 32);

    // Wrap the seed as a PKCS#8 Ed25519 key (RFC 8410) so openssl can use it.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("key.der");
    let public = work.path().join("pub.pem");
    let message = work.path().join("message");
    let signature = work.path().join("sig");
    fs::write(&key, &der).unwrap();
    fs::write(&message, b"a federation request").unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_owned();

    openssl(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        &p(&key),
        "-pubout",
        "-out",
        &p(&public),
    ]);
    openssl(&[
        "pkeyutl",
        "-sign",
        "-rawin",
        "-inkey",
        &p(&key),
        "-keyform",
        "DER",
        "-in",
        &p(&message),
        "-out",
        &p(&signature),
    ]);
    let verified = openssl(&[
        "pkeyutl",
        "-verify",
        "-rawin",
        "-pubin",
        "-inkey",
        &p(&public),
        "-in",
        &p(&message),
        "-sigfile",
        &p(&signature),
    ]);
    assert!(
        verified.contains("Signature Verified Successfully"),
        "{verified}"
    );
}

#[test]
fn running_secrets_twice_changes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(dir.path(), "");
    run_secrets(&config);
    let before = snapshot(&dir.path().join("secrets"));

    std::thread::sleep(std::time::Duration::from_millis(20));
    let report = run_secrets(&config);

    assert_eq!(snapshot(&dir.path().join("secrets")), before);
    assert_eq!(
        report
            .lines()
            .filter(|l| l.starts_with("kept       "))
            .count(),
        ALL_GENERATED,
        "{report}"
    );
    assert!(!report.contains("generated"), "{report}");
}

#[test]
fn a_pre_existing_secret_survives_and_only_the_missing_ones_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(dir.path(), "");
    let secrets = dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700)).unwrap();
    let own = b"an-operator-chosen-macaroon-secret-value";
    fs::write(secrets.join("SYNAPSE_MACAROON"), own).unwrap();
    fs::set_permissions(
        secrets.join("SYNAPSE_MACAROON"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let report = run_secrets(&config);

    assert_eq!(fs::read(secrets.join("SYNAPSE_MACAROON")).unwrap(), own);
    assert!(report.contains("kept       SYNAPSE_MACAROON\n"), "{report}");
    assert_eq!(
        report
            .lines()
            .filter(|l| l.starts_with("generated"))
            .count(),
        ALL_GENERATED - 1
    );
}

#[test]
fn a_malformed_secret_is_an_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(dir.path(), "");
    let secrets = dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700)).unwrap();
    let path = secrets.join("MAS_ENCRYPTION_SECRET");
    fs::write(&path, b"not-sixty-four-hex-characters").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();

    let out = essctl(&["secrets", "--config", config.to_str().unwrap()], &[]);

    let err = one_line_error(&out);
    assert!(
        err.contains("MAS_ENCRYPTION_SECRET is malformed: expected exactly 64 hex characters"),
        "{err}"
    );
    assert!(
        !err.contains("not-sixty-four"),
        "the error shows the value: {err}"
    );
    assert_eq!(fs::read(&path).unwrap(), b"not-sixty-four-hex-characters");
    assert_eq!(
        fs::read_dir(&secrets).unwrap().count(),
        1,
        "nothing else was generated"
    );
}

#[test]
fn secret_files_are_read_only_for_the_owner_in_an_owner_only_directory() {
    let dir = tempfile::tempdir().unwrap();
    run_secrets(&write_deployment(dir.path(), ""));
    let secrets = dir.path().join("secrets");

    assert_eq!(
        fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in fs::read_dir(&secrets).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400, "{:?}", entry.file_name());
    }
}

#[test]
fn a_secrets_directory_open_to_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(dir.path(), "");
    let secrets = dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o755)).unwrap();

    let err = one_line_error(&essctl(
        &["secrets", "--config", config.to_str().unwrap()],
        &[],
    ));
    assert!(
        err.contains("is open to group or others (mode 0755)"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&secrets).unwrap().count(), 0);
}

#[test]
fn the_oidc_client_secret_from_the_environment_is_stored_once_and_kept_while_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(
        dir.path(),
        "mas:\n  upstream_oidc:\n    issuer: https://auth.example.com/\n    client_id: ess\n    client_secret: {env: ESS_TEST_OIDC_SECRET}\n",
    );
    let args = ["secrets", "--config", config.to_str().unwrap()];
    let env = [("ESS_TEST_OIDC_SECRET", "oidc-client-secret-value")];

    let first = essctl(&args, &env);
    assert!(
        first.status.success(),
        "{}",
        orchestrator_support::stderr(&first)
    );
    let path = dir.path().join("secrets/UPSTREAM_OIDC_CLIENT_SECRET");
    assert_eq!(fs::read(&path).unwrap(), b"oidc-client-secret-value");
    assert!(stdout(&first).contains(
        "written    UPSTREAM_OIDC_CLIENT_SECRET (from environment variable ESS_TEST_OIDC_SECRET)"
    ));
    assert!(!stdout(&first).contains("oidc-client-secret-value"));
    let before = snapshot(&dir.path().join("secrets"));

    let second = essctl(&args, &env);
    assert!(
        stdout(&second).contains("unchanged  UPSTREAM_OIDC_CLIENT_SECRET"),
        "{}",
        stdout(&second)
    );
    assert_eq!(snapshot(&dir.path().join("secrets")), before);

    let rotated = essctl(&args, &[("ESS_TEST_OIDC_SECRET", "rotated-value")]);
    assert!(stdout(&rotated).contains("written    UPSTREAM_OIDC_CLIENT_SECRET"));
    assert_eq!(fs::read(&path).unwrap(), b"rotated-value");
}

#[test]
fn an_unset_environment_variable_is_a_one_line_error_naming_key_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_deployment(
        dir.path(),
        "registries:\n  - server: oci.element.io\n    username: ess\n    password: {env: ESS_TEST_UNSET_VARIABLE}\n",
    );
    let err = one_line_error(&essctl(
        &["secrets", "--config", config.to_str().unwrap()],
        &[],
    ));
    assert!(
        err.contains(
            "registries[0].password: environment variable ESS_TEST_UNSET_VARIABLE is not set"
        ),
        "{err}"
    );
}
