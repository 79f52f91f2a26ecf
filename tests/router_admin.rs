//! The admin API allow-list, with and without a trusted front proxy.

use ess_suite::free_port;
use ess_suite::http::request;
use ess_suite::processes::{pool_yaml, RouterProcess, Standin};

const FORBIDDEN: &str =
    r#"{"errcode":"M_FORBIDDEN","error":"Admin API is not reachable from this address"}"#;

fn router(net: u8, access: &str) -> (RouterProcess, Standin) {
    let main = Standin::start("main", &format!("127.0.{net}.2"), free_port());
    let yaml = format!(
        "access:\n{access}synapse:\n  pools:\n{}",
        pool_yaml("main", &[&main], "")
    );
    let router = RouterProcess::start(&yaml);
    router.wait_ready(200);
    (router, main)
}

#[test]
fn admin_api_is_refused_outside_the_allow_list() {
    let (router, _main) = router(30, "  admin_allow: [10.0.0.0/8]\n");
    let at = router.ports.synapse;
    for path in [
        "/_synapse/admin/v1/users",
        "//_synapse/admin/v1/users",
        "/_synapse/%61dmin/v1/users",
        "/_synapse%2fadmin/v1/users",
        "/_matrix/../_synapse/admin/v1/users",
    ] {
        let r = request(at, "GET", path, &[]);
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.text(), FORBIDDEN);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // Other paths are not affected, and X-Forwarded-For from an untrusted peer is ignored.
    assert_eq!(request(at, "GET", "/_synapse/client/x", &[]).status, 200);
    let r = request(
        at,
        "GET",
        "/_synapse/admin/v1/users",
        &[("X-Forwarded-For", "10.1.1.1")],
    );
    assert_eq!(
        r.status, 403,
        "an untrusted peer cannot claim an allowed address"
    );
}

#[test]
fn admin_api_is_served_inside_the_allow_list() {
    let (router, _main) = router(31, "  admin_allow: [127.0.0.0/8]\n");
    let r = request(router.ports.synapse, "GET", "/_synapse/admin/v1/users", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["server"], "main");
}

#[test]
fn behind_a_trusted_proxy_the_last_forwarded_address_counts() {
    let (router, _main) = router(
        32,
        "  trusted_proxies: [127.0.0.1/32]\n  admin_allow: [192.0.2.0/24]\n",
    );
    let at = router.ports.synapse;
    let allowed = request(
        at,
        "GET",
        "/_synapse/admin/v1/users",
        &[("X-Forwarded-For", "203.0.113.9, 192.0.2.10")],
    );
    assert_eq!(allowed.status, 200);
    // The forwarded chain is kept, and the Forwarded element names the real client.
    let h = &allowed.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 192.0.2.10");
    assert_eq!(h["forwarded"], "proto=http;for=192.0.2.10");

    let spoofed = request(
        at,
        "GET",
        "/_synapse/admin/v1/users",
        &[("X-Forwarded-For", "192.0.2.10, 203.0.113.9")],
    );
    assert_eq!(
        spoofed.status, 403,
        "only the address the trusted proxy saw counts"
    );
    let none = request(at, "GET", "/_synapse/admin/v1/users", &[]);
    assert_eq!(none.status, 403, "the proxy's own address is not allowed");
}

#[test]
fn without_an_allow_list_the_admin_api_is_open() {
    let (router, _main) = router(33, "  trusted_proxies: []\n");
    assert_eq!(
        request(router.ports.synapse, "GET", "/_synapse/admin/v1/users", &[]).status,
        200
    );
}
