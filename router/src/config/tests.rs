use super::*;

fn parse(yaml: &str) -> Result<Settings, ConfigError> {
    Settings::parse(Path::new("router.yaml"), yaml)
}

fn error(yaml: &str) -> String {
    parse(yaml).expect_err("config must be refused").to_string()
}

const MINIMAL: &str = "synapse:\n  pools:\n    main:\n      servers: [\"127.0.0.1:8008\"]\n";

#[test]
fn a_minimal_file_gets_the_charts_defaults() {
    let s = parse(MINIMAL).expect("valid");
    assert_eq!(
        s.listeners.synapse,
        Some("0.0.0.0:8008".parse().expect("addr"))
    );
    assert_eq!(
        s.listeners.startup,
        Some("0.0.0.0:8406".parse().expect("addr"))
    );
    assert_eq!(s.timeouts.connect, Duration::from_secs(5));
    assert_eq!(s.timeouts.request_headers, Duration::from_secs(10));
    assert_eq!(s.timeouts.client_idle, Duration::from_secs(900));
    assert_eq!(s.timeouts.server, Duration::from_secs(180));
    let main = &s.pools[0];
    assert_eq!(main.kind, WorkerType::Main);
    assert_eq!(main.maxconn, 250);
    assert_eq!(main.failover_maxconn, 250);
    assert_eq!(main.queue_timeout, Duration::from_secs(60));
    let hc = main.health_check.as_ref().expect("checked by default");
    assert_eq!(
        (hc.path.as_str(), hc.port, hc.fall, hc.rise),
        ("/health", 8080, 3, 2)
    );
    assert_eq!(hc.interval, Duration::from_secs(2));
    assert!(s.admin_allow.is_none());
    assert_eq!(s.well_known.headers.len(), 9);
}

#[test]
fn pool_defaults_follow_the_worker_type() {
    let s = parse(
        "synapse:\n  pools:\n    main: {servers: []}\n    synchrotron: {servers: []}\n    media-repository: {servers: []}\n",
    )
    .expect("valid");
    let sync = s
        .pools
        .iter()
        .find(|p| p.kind == WorkerType::Synchrotron)
        .expect("pool");
    assert_eq!((sync.maxconn, sync.balance), (2000, Balance::AccessToken));
    assert_eq!(sync.queue_timeout, Duration::from_secs(5));
    assert!(sync.fallback_to_main);
    let media = s
        .pools
        .iter()
        .find(|p| p.kind == WorkerType::MediaRepository)
        .expect("pool");
    assert!(!media.fallback_to_main);
}

#[test]
fn unknown_pool_is_refused_with_the_known_names() {
    let e = error(
        "synapse:\n  pools:\n    main: {servers: []}\n    federation-writer: {servers: []}\n",
    );
    assert!(
        e.starts_with("router.yaml: synapse.pools.federation-writer: unknown pool"),
        "{e}"
    );
    assert!(e.contains("federation-reader"), "{e}");
}

#[test]
fn unknown_key_names_where_it_is() {
    let e = error("synapse:\n  pools:\n    main: {servers: [], maxconns: 3}\n");
    assert!(e.contains("synapse.pools.main"), "{e}");
    assert!(e.contains("maxconns"), "{e}");
}

#[test]
fn bad_regex_names_the_pool_and_index() {
    let e = error("synapse:\n  pools:\n    main: {servers: []}\n    client-reader: {servers: [], paths: [\"^/ok\", \"(\"]}\n");
    assert!(
        e.starts_with("router.yaml: synapse.pools.client-reader.paths[1]: bad regex"),
        "{e}"
    );
}

#[test]
fn main_is_required() {
    let e = error("synapse:\n  pools:\n    synchrotron: {servers: []}\n");
    assert!(
        e.contains("synapse.pools.main: the main pool is required"),
        "{e}"
    );
}

#[test]
fn overlapping_listeners_are_refused() {
    let e = error(&format!(
        "listeners:\n  synapse: 0.0.0.0:9000\n  metrics: 127.0.0.1:9000\n{MINIMAL}"
    ));
    assert!(
        e.contains("listeners.metrics: 127.0.0.1:9000 overlaps listeners.synapse"),
        "{e}"
    );
    parse(&format!(
        "listeners:\n  synapse: 127.0.0.1:9000\n  metrics: 127.0.0.2:9000\n{MINIMAL}"
    ))
    .expect("different addresses on one port do not overlap");
}

#[test]
fn listeners_left_out_are_off() {
    let s = parse(&format!("listeners:\n  synapse: 127.0.0.1:9000\n{MINIMAL}")).expect("valid");
    assert!(s.listeners.metrics.is_none() && s.listeners.blackhole.is_none());
}

#[test]
fn bad_values_name_the_key_and_what_was_expected() {
    let cases = [
        (
            "timeouts:\n  connect: soon\n",
            "timeouts.connect: expected a duration",
        ),
        (
            "access:\n  admin_allow: [10.0.0.0/33]\n",
            "access.admin_allow[0]: expected a CIDR",
        ),
        (
            "listeners:\n  synapse: 8008\n",
            "listeners.synapse: expected an address",
        ),
        (
            "access_log: xml\n",
            "access_log: expected `haproxy` or `json`",
        ),
    ];
    for (extra, want) in cases {
        let e = error(&format!("{extra}{MINIMAL}"));
        assert!(e.contains(want), "{e} should contain {want}");
    }
    let e = error("synapse:\n  pools:\n    main: {servers: [\"nohost\"]}\n");
    assert!(
        e.contains("synapse.pools.main.servers[0]: expected host:port"),
        "{e}"
    );
    let e = error("synapse:\n  pools:\n    main: {servers: []}\n    sso-login: {servers: [], fallback_to_main: true}\n");
    assert!(e.contains("sso-login cannot fall back"), "{e}");
}

#[test]
fn documents_must_be_json_and_readable() {
    let e = error(&format!(
        "{MINIMAL}well_known:\n  server:\n    inline: 'not json'\n"
    ));
    assert!(
        e.contains("well_known.server: expected a JSON document"),
        "{e}"
    );
    let e = error(&format!(
        "{MINIMAL}well_known:\n  client:\n    file: /nonexistent/client.json\n"
    ));
    assert!(
        e.contains("well_known.client.file: cannot read /nonexistent/client.json"),
        "{e}"
    );
    let s = parse(&format!(
        "{MINIMAL}well_known:\n  server:\n    inline: {{m.server: \"a:443\"}}\n"
    ))
    .expect("YAML documents are converted");
    assert_eq!(
        s.well_known.server.as_deref(),
        Some(&br#"{"m.server":"a:443"}"#[..])
    );
}

#[test]
fn well_known_headers_can_be_changed_added_and_removed() {
    let s = parse(&format!(
        "{MINIMAL}well_known:\n  headers:\n    cache-control: no-store\n    X-Frame-Options: null\n    X-Extra: yes\n"
    ))
    .expect("valid");
    let get = |n: &str| {
        s.well_known
            .headers
            .iter()
            .find(|(k, _)| k.as_str().eq_ignore_ascii_case(n))
            .map(|(_, v)| v.to_str().expect("ascii").to_string())
    };
    assert_eq!(get("Cache-Control").as_deref(), Some("no-store"));
    assert_eq!(get("X-Frame-Options"), None);
    assert_eq!(get("X-Extra").as_deref(), Some("yes"));
    assert_eq!(get("X-Content-Type-Options").as_deref(), Some("nosniff"));
}

#[test]
fn the_example_configuration_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/router.example.yaml");
    let s = Settings::load(&path).expect("example config");
    assert!(s.mas);
    assert_eq!(s.pools.len(), 5);
}

fn servers(list: &str) -> Result<Vec<ServerSpec>, ConfigError> {
    parse(&format!(
        "synapse:\n  pools:\n    main:\n      servers: [{list}]\n"
    ))
    .map(|s| s.pools[0].servers.clone())
}

#[test]
fn servers_are_addresses_host_names_with_a_port_or_srv_names() {
    let got = servers(
        r#""10.0.0.5:8008", "[fd00::5]:8008", "synapse-main:8008", "ess_synapse-main.local.:8008", "_synapse-http._tcp.synapse-main", "_synapse-http._TCP.synapse-main.ns.svc.cluster.local.""#,
    )
    .expect("valid");
    assert_eq!(
        got,
        vec![
            ServerSpec::Addr("10.0.0.5:8008".parse().expect("addr")),
            ServerSpec::Addr("[fd00::5]:8008".parse().expect("addr")),
            ServerSpec::Host {
                name: "synapse-main".into(),
                port: 8008
            },
            ServerSpec::Host {
                name: "ess_synapse-main.local.".into(),
                port: 8008
            },
            ServerSpec::Srv("_synapse-http._tcp.synapse-main".into()),
            ServerSpec::Srv("_synapse-http._TCP.synapse-main.ns.svc.cluster.local.".into()),
        ]
    );
    let shown: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(shown[1], "[fd00::5]:8008");
    assert_eq!(shown[2], "synapse-main:8008");
    assert_eq!(shown[4], "_synapse-http._tcp.synapse-main");
    assert_eq!(
        got[0].literal(),
        Some("10.0.0.5:8008".parse().expect("addr"))
    );
    assert_eq!(got[2].literal(), None);
    assert_eq!(got[4].literal(), None);
}

#[test]
fn malformed_servers_are_refused_naming_the_key() {
    let cases = [
        ("\"synapse-main\"", "a host name needs a port"),
        ("\"synapse-main:0\"", "port 0 is not a port"),
        ("\"10.0.0.5:0\"", "port 0 is not a port"),
        ("\"synapse-main:http\"", "found `synapse-main:http`"),
        ("\"synapse-main:70000\"", "found `synapse-main:70000`"),
        ("\"fd00::5:8008\"", "an IPv6 address goes in brackets"),
        (
            "\"_synapse-http._tcp.synapse-main:8008\"",
            "an SRV name takes no port",
        ),
        (
            "\"_synapse-http.synapse-main\"",
            "found `_synapse-http.synapse-main`",
        ),
        (
            "\"_synapse-http._udp.synapse-main\"",
            "found `_synapse-http._udp.synapse-main`",
        ),
        ("\"_._tcp.synapse-main\"", "found `_._tcp.synapse-main`"),
        ("\"_synapse-http._tcp.\"", "found `_synapse-http._tcp.`"),
        ("\"bad..name:8008\"", "found `bad..name:8008`"),
        ("\"spaced name:8008\"", "found `spaced name:8008`"),
        ("\":8008\"", "found `:8008`"),
    ];
    for (server, want) in cases {
        let e = servers(&format!("\"127.0.0.1:8008\", {server}"))
            .expect_err("server must be refused")
            .to_string();
        assert!(
            e.contains("synapse.pools.main.servers[1]: expected host:port"),
            "{e}"
        );
        assert!(e.contains(want), "{e} should contain {want}");
    }
}

#[test]
fn discovery_settings_default_to_the_charts_and_take_nameservers() {
    let s = parse(MINIMAL).expect("valid");
    assert_eq!(s.discovery.interval, Duration::from_secs(1));
    assert_eq!(s.discovery.hold, Duration::from_secs(600));
    assert_eq!(s.discovery.family, AddressFamily::Ipv4);
    assert!(
        s.discovery.nameservers.is_empty(),
        "the system's by default"
    );

    let s = parse(&format!(
        "discovery:\n  interval: 200ms\n  hold: 2s\n  family: ipv6\n  nameservers: [\"127.0.0.1:5353\", \"10.0.0.10\", \"[fd00::10]:53\"]\n{MINIMAL}"
    ))
    .expect("valid");
    assert_eq!(s.discovery.interval, Duration::from_millis(200));
    assert_eq!(s.discovery.hold, Duration::from_secs(2));
    assert_eq!(s.discovery.family, AddressFamily::Ipv6);
    let want: Vec<SocketAddr> = ["127.0.0.1:5353", "10.0.0.10:53", "[fd00::10]:53"]
        .iter()
        .map(|a| a.parse().expect("addr"))
        .collect();
    assert_eq!(s.discovery.nameservers, want);

    let e = error(&format!(
        "discovery:\n  nameservers: [\"127.0.0.1:5353\", \"dns.local\"]\n{MINIMAL}"
    ));
    assert!(
        e.contains("discovery.nameservers[1]: expected an address"),
        "{e}"
    );
    let e = error(&format!("discovery:\n  interval: 0s\n{MINIMAL}"));
    assert!(
        e.contains("discovery.interval: expected more than 0s"),
        "{e}"
    );
    let e = error(&format!("discovery:\n  family: both\n{MINIMAL}"));
    assert!(
        e.contains("discovery.family: expected `ipv4` or `ipv6`"),
        "{e}"
    );
}
