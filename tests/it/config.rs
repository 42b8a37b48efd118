//! The binary's configuration handling: every bad setting stops start-up with exit code 64 and
//! a message naming it; `--config.check` validates and never prints the password; the process
//! starts with one malloc arena unless the operator chose otherwise.

use std::process::Command;

fn run(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xen-exporter"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_exit_64_naming_the_setting() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("XEN_HOST", "https://")], "XEN_HOST"),
        (&[("XEN_HOST", "host:notaport")], "XEN_HOST"),
        (
            &[("XEN_PASSWORD_FILE", "/nonexistent/xen-password")],
            "XEN_PASSWORD_FILE",
        ),
        (&[("XEN_MODE", "cluster")], "XEN_MODE"),
        (&[("PORT", "abc")], "PORT"),
        (&[("XEN_SSL_VERIFY", "maybe")], "XEN_SSL_VERIFY"),
        (&[("HALT_ON_NO_UUID", "sometimes")], "HALT_ON_NO_UUID"),
        (&[("XEN_TIMEOUT", "-1")], "XEN_TIMEOUT"),
        (&[("XEN_TIMEOUT", "8x")], "XEN_TIMEOUT"),
        (&[("XEN_TIMEOUT", "1.5s")], "XEN_TIMEOUT"),
        (
            &[("XEN_SCRAPE_MIN_INTERVAL", "1s1m")],
            "XEN_SCRAPE_MIN_INTERVAL",
        ),
        (
            &[("XEN_SCRAPE_TIMEOUT_OFFSET", "nan")],
            "XEN_SCRAPE_TIMEOUT_OFFSET",
        ),
        (
            &[("XEN_WEB_READ_HEADER_TIMEOUT", "0ms")],
            "XEN_WEB_READ_HEADER_TIMEOUT",
        ),
        (
            &[("XEN_WEB_REQUEST_TIMEOUT", "")],
            "XEN_WEB_REQUEST_TIMEOUT",
        ),
        (&[("BIND", "not-an-ip")], "BIND"),
        (
            &[("XEN_SSL_CA_FILE", "/nonexistent/ca.pem")],
            "XEN_SSL_CA_FILE",
        ),
        (
            &[("XEN_SSL_FINGERPRINT", "12:34:zz")],
            "XEN_SSL_FINGERPRINT",
        ),
        (
            &[("XEN_SSL_CLIENT_KEY_FILE", "/nonexistent/key.pem")],
            "XEN_SSL_CLIENT_CERT_FILE",
        ),
        (
            &[
                ("XEN_SSL_CLIENT_CERT_FILE", "/nonexistent/cert.pem"),
                ("XEN_SSL_CLIENT_KEY_FILE", "/nonexistent/key.pem"),
            ],
            "XEN_SSL_CLIENT_CERT_FILE",
        ),
        (&[("XEN_HASH_UUIDS", "true")], "XEN_HASH_UUIDS_KEY_FILE"),
        (&[("XEN_HASH_UUIDS", "maybe")], "XEN_HASH_UUIDS"),
        (&[("XEN_COLLECT_VM_RRD", "maybe")], "XEN_COLLECT_VM_RRD"),
        (
            &[("XEN_METRICS_NAMING", "openmetrics")],
            "XEN_METRICS_NAMING",
        ),
        (
            &[
                ("XEN_HASH_UUIDS", "true"),
                ("XEN_HASH_UUIDS_KEY_FILE", "/nonexistent/key"),
            ],
            "XEN_HASH_UUIDS_KEY_FILE",
        ),
    ];
    for (env, setting) in cases {
        for args in [&[][..], &["--config.check"][..]] {
            let (code, _, stderr) = run(env, args);
            assert_eq!(code, 64, "{env:?} {args:?}: {stderr}");
            assert!(stderr.contains(setting), "{env:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{env:?}: {stderr}");
        }
    }
}

#[test]
fn config_check_prints_what_it_understood_without_the_password() {
    let (code, stdout, stderr) = run(
        &[
            ("XEN_HOST", "https://[2001:db8::1]:8443"),
            ("XEN_PASSWORD", "Tr0ub4dor&3-very-secret"),
            ("XEN_MODE", "pool"),
        ],
        &["--config.check"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("https://[2001:db8::1]:8443"), "{stdout}");
    assert!(stdout.contains("pool"));
    assert!(!stdout.contains("Tr0ub4dor") && !stderr.contains("Tr0ub4dor"));
}

/// One syntax for every duration, whichever way it is set: Prometheus' (`1500ms`, `1m`) or the
/// original exporter's plain seconds (`8`, `2.5`). `--config.check` contacts no pool.
#[test]
fn durations_take_prometheus_syntax_or_plain_seconds() {
    /// Environment, flags, and the line `--config.check` prints.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[("XEN_TIMEOUT", "1500ms")], &[], "xen.timeout        1.5s"),
        (&[("XEN_TIMEOUT", "8")], &[], "xen.timeout        8s"),
        (&[("XEN_TIMEOUT", "2.5")], &[], "xen.timeout        2.5s"),
        (&[], &["--xen.timeout", "1m"], "xen.timeout        60s"),
        (
            &[("XEN_SCRAPE_MIN_INTERVAL", "1m")],
            &[],
            "scrape.min-interval 60s",
        ),
        (
            &[("XEN_WEB_REQUEST_TIMEOUT", "30s")],
            &[],
            "web.request-timeout 30s",
        ),
        (
            &[("XEN_WEB_READ_HEADER_TIMEOUT", "500ms")],
            &[],
            "web.read-header-timeout 500ms",
        ),
        (
            &[],
            &["--scrape.timeout-offset", "250ms"],
            "scrape.timeout-offset 250ms",
        ),
    ];
    for (env, flags, printed) in cases {
        let mut args = vec!["--config.check"];
        args.extend_from_slice(flags);
        let (code, stdout, stderr) = run(env, &args);
        assert_eq!(code, 0, "{env:?} {flags:?}: {stderr}");
        assert!(stdout.contains(printed), "{env:?} {flags:?}: {stdout}");
    }
    let (code, _, stderr) = run(&[("XEN_TIMEOUT", "8x")], &["--config.check"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("XEN_TIMEOUT (--xen.timeout) \"8x\" is not valid"),
        "{stderr}"
    );
}

#[test]
fn a_pool_file_takes_the_same_durations() {
    let dir = std::env::temp_dir().join(format!("xen-exporter-durations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("pools.yml");
    std::fs::write(
        &good,
        "pools:\n  - {name: a, hosts: [h], timeout: 1500ms}\n  - {name: b, hosts: [h], timeout: 8}\n  - {name: c, hosts: [h], timeout: 2.5}\n  - {name: d, hosts: [h], timeout: \"1m\"}\n",
    )
    .unwrap();
    let (code, out, err) = run(
        &[],
        &["--config.check", "--config.file", good.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let timeouts: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("xen.timeout"))
        .map(str::trim)
        .collect();
    // The environment's one pool (default 8s) is printed only without a file.
    assert_eq!(timeouts, ["1.5s", "8s", "2.5s", "60s"], "{out}");

    let bad = dir.join("bad.yml");
    std::fs::write(
        &bad,
        "pools:\n  - {name: ok, hosts: [h]}\n  - {name: lab, hosts: [h], timeout: 8x}\n",
    )
    .unwrap();
    let (code, _, err) = run(
        &[],
        &["--config.check", "--config.file", bad.to_str().unwrap()],
    );
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("pool \"lab\": `timeout` \"8x\" is not valid"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unset_xen_host_means_localhost_like_the_original() {
    let (code, stdout, _) = run(&[], &["--config.check"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("https://localhost:443"), "{stdout}");
}

#[test]
fn help_documents_every_environment_variable() {
    let (code, stdout, _) = run(&[], &["--help"]);
    assert_eq!(code, 0);
    for var in [
        "XEN_HOST",
        "XEN_USER",
        "XEN_PASSWORD_FILE",
        "XEN_PASSWORD",
        "XEN_SSL_VERIFY",
        "XEN_SSL_CA_FILE",
        "XEN_SSL_FINGERPRINT",
        "XEN_SSL_CLIENT_CERT_FILE",
        "XEN_SSL_CLIENT_KEY_FILE",
        "XEN_HASH_UUIDS",
        "XEN_HASH_UUIDS_KEY_FILE",
        "XEN_COLLECT_VM_RRD",
        "XEN_METRICS_NAMING",
        "XEN_MODE",
        "HALT_ON_NO_UUID",
        "XEN_TIMEOUT",
        "PORT",
        "BIND",
    ] {
        assert!(stdout.contains(var), "--help lacks {var}");
    }
}

#[test]
fn a_configuration_file_is_checked_and_printed_with_secrets_masked() {
    let dir = std::env::temp_dir().join(format!("xen-exporter-cfgfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("lab-password");
    std::fs::write(&secret, "file-pool-secret-31337\n").unwrap();
    let good = dir.join("pools.yml");
    std::fs::write(
        &good,
        format!(
            "pools:\n  - name: lab\n    hosts: [\"https://192.0.2.10\", 192.0.2.11]\n    user: monitoring\n    password_file: {}\n    mode: pool\n  - name: edge\n    hosts: [xcp-edge.example.com]\n    timeout: 3s\n    tls: {{insecure_skip_verify: true}}\n",
            secret.display()
        ),
    )
    .unwrap();
    let (code, out, err) = run(
        &[],
        &["--config.check", "--config.file", good.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 pools"), "{out}");
    assert!(
        out.contains("name               lab") && out.contains("name               edge"),
        "{out}"
    );
    assert!(out.contains("https://192.0.2.11:443"), "{out}");
    assert!(
        out.contains("<secret>") && !out.contains("file-pool-secret-31337"),
        "{out}"
    );
    assert!(out.contains("verification OFF"), "{out}");

    let bad = dir.join("bad.yml");
    std::fs::write(
        &bad,
        "pools:\n  - name: lab\n    hosts: [h]\n    passwd_file: /x\n",
    )
    .unwrap();
    let (code, _, err) = run(
        &[],
        &["--config.check", "--config.file", bad.to_str().unwrap()],
    );
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("--config.file") && err.contains("passwd_file"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The exporter keeps its memory low by itself: it runs in the environment and with the
/// arguments its parent gave it, without restarting itself (supervisors, `strace` and seccomp
/// filters see one `execve`).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_exporter_runs_in_the_environment_its_parent_gave_it() {
    let exporter =
        crate::harness::Binary::start(&[("XEN_EXPORTER_TEST_MARK", "1")], &["--demo"]).await;
    let environ = std::fs::read(format!("/proc/{}/environ", exporter.pid())).unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", exporter.pid())).unwrap();
    let (status, _) = exporter.get("/-/healthy").await;
    let (code, _, stderr) = exporter.stop().await;
    // What the harness gives it: a cleared environment and these.
    let given: Vec<&[u8]> = vec![b"BIND=127.0.0.1", b"PORT=0", b"XEN_EXPORTER_TEST_MARK=1"];
    let mut running: Vec<&[u8]> = environ
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .collect();
    running.sort();
    assert_eq!(running, given, "{stderr}");
    let args: Vec<&[u8]> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(
        args,
        [env!("CARGO_BIN_EXE_xen-exporter").as_bytes(), b"--demo"],
    );
    assert_eq!(status, 200);
    assert_eq!(code, Some(0), "{stderr}");
}
