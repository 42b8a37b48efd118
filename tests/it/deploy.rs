//! The Kubernetes manifests of `deploy/kubernetes`, checked where the offline schema
//! validation of CI (kubernetes-validate) cannot look: the hardening of the pod, the password
//! as a Secret file, the probes on the health paths, requests and limits, the Service
//! selecting the pods, the Prometheus Operator's ServiceMonitor and Probe (kinds that
//! validator has no schema for) pointing at the Service, and the settings themselves, given
//! to the real binary's `--config.check`. A mutation test shows that each check fails when
//! its point is taken out of the manifests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{Scratch, run_binary};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VARIANTS: [&str; 2] = ["single-pool", "many-pools"];

/// One directory of manifests: each file holds one document.
#[derive(Clone)]
struct Variant {
    name: String,
    files: BTreeMap<String, Value>,
}

fn load(name: &str) -> Variant {
    let dir = Path::new(ROOT).join("deploy/kubernetes").join(name);
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(docs.len(), 1, "{}: one document per file", path.display());
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(file, docs.into_iter().next().unwrap());
        }
    }
    Variant {
        name: name.to_string(),
        files,
    }
}

impl Variant {
    /// The documents of `kind`.
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.files.values().filter(|d| d["kind"] == kind).collect()
    }

    /// The one document of `kind`.
    fn one(&self, kind: &str) -> Result<&Value, String> {
        match self.all(kind).as_slice() {
            [one] => Ok(one),
            other => Err(format!("{} {kind}s, wanted one", other.len())),
        }
    }

    /// The object named `name` of `kind`.
    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.all(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
    }

    /// The one Deployment's `(pod spec, container)`.
    fn pod(&self) -> Result<(&Value, &Value), String> {
        let deployment = self.one("Deployment")?;
        let pod = &deployment["spec"]["template"]["spec"];
        match pod["containers"].as_array().map(Vec::as_slice) {
            Some([container]) => Ok((pod, container)),
            _ => Err("the Deployment has no single container".into()),
        }
    }
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

fn has_env(container: &Value, name: &str) -> bool {
    container["env"]
        .as_array()
        .is_some_and(|list| list.iter().any(|e| e["name"] == name))
}

/// Whether every entry of `subset` (a label map) is in `labels`, and there is one at least.
fn selects(subset: &Value, labels: &Value) -> bool {
    subset
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Where a file path inside the container comes from: `(kind, object name, key)` of the
/// Secret or ConfigMap volume mounted over it, with its items mapping applied.
fn source_of(
    pod: &Value,
    container: &Value,
    path: &str,
) -> Result<(String, String, String), String> {
    let mounts = container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (mount, rest) = mounts
        .iter()
        .filter_map(|m| {
            let at = m["mountPath"].as_str()?;
            let rest = path.strip_prefix(at)?.strip_prefix('/')?;
            Some((m, rest.to_string()))
        })
        .next()
        .ok_or_else(|| format!("{path} is on no volume mount"))?;
    if mount["readOnly"] != true {
        return Err(format!("the mount of {path} is not readOnly"));
    }
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
        .ok_or_else(|| format!("{path}: no volume {}", mount["name"]))?;
    let (kind, source, name) = if volume["secret"].is_object() {
        ("Secret", &volume["secret"], &volume["secret"]["secretName"])
    } else if volume["configMap"].is_object() {
        (
            "ConfigMap",
            &volume["configMap"],
            &volume["configMap"]["name"],
        )
    } else {
        return Err(format!(
            "{path} is on neither a Secret nor a ConfigMap volume"
        ));
    };
    let key = match source["items"].as_array() {
        Some(items) => items
            .iter()
            .find(|i| i["path"] == rest.as_str())
            .and_then(|i| i["key"].as_str())
            .ok_or_else(|| format!("{path}: no item of the {kind} volume has path {rest}"))?
            .to_string(),
        None => rest,
    };
    Ok((
        kind.to_string(),
        name.as_str().unwrap_or("").to_string(),
        key,
    ))
}

/// The text under `key` of the Secret or ConfigMap `name` in the variant.
fn key_text<'a>(
    variant: &'a Variant,
    kind: &str,
    name: &str,
    key: &str,
) -> Result<&'a str, String> {
    let object = variant
        .named(kind, name)
        .ok_or_else(|| format!("no {kind} {name} in deploy/kubernetes/{}", variant.name))?;
    ["stringData", "data"]
        .iter()
        .find_map(|field| object[*field][key].as_str())
        .ok_or_else(|| format!("{kind} {name} has no key {key}"))
}

/// The pools file of a many-pools variant: `(pool name, password_file)` of each pool.
fn pools(text: &str) -> Result<Vec<(String, String)>, String> {
    let file: Value = serde_saphyr::from_str(text).map_err(|e| format!("pools.yml: {e}"))?;
    file["pools"]
        .as_array()
        .ok_or("pools.yml has no pools")?
        .iter()
        .map(|p| {
            Ok((
                p["name"].as_str().ok_or("a pool without name")?.to_string(),
                p["password_file"]
                    .as_str()
                    .ok_or("a pool without password_file")?
                    .to_string(),
            ))
        })
        .collect()
}

/// The port the image listens on and its user, from the Dockerfile.
fn dockerfile() -> (u64, String) {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let word = |directive: &str| {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix(directive))
            .map(|w| w.trim().to_string())
            .unwrap_or_else(|| panic!("Dockerfile: no {directive}"))
    };
    (word("EXPOSE ").parse().unwrap(), word("USER "))
}

/// Everything wrong with one variant, each naming the point it is about.
fn problems(variant: &Variant) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            out.push(format!("{}: {what}", variant.name));
        }
    };
    let version = env!("CARGO_PKG_VERSION");
    let (port, user) = dockerfile();

    // The kustomization lists every manifest but the Secret example.
    match variant.one("Kustomization") {
        Ok(k) => {
            let listed: BTreeSet<&str> = k["resources"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let files: BTreeSet<&str> = variant
                .files
                .iter()
                .filter(|(f, d)| !f.contains(".example.") && d["kind"] != "Kustomization")
                .map(|(f, _)| f.as_str())
                .collect();
            check(
                listed == files,
                format!("kustomization resources {listed:?}, files {files:?}"),
            );
            check(
                k["images"][0]["newTag"] == version,
                format!("kustomization image tag is not the package version {version}"),
            );
        }
        Err(why) => check(false, format!("kustomization: {why}")),
    }
    let namespace = variant
        .one("Kustomization")
        .ok()
        .and_then(|k| k["namespace"].as_str())
        .unwrap_or("");

    let Ok(deployment) = variant.one("Deployment") else {
        check(false, "no single Deployment".into());
        return out;
    };
    let (pod, container) = match variant.pod() {
        Ok(p) => p,
        Err(why) => {
            check(false, why);
            return out;
        }
    };
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    check(
        selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels),
        "the Deployment's selector does not match its pod labels".into(),
    );
    check(
        container["image"] == format!("xen-exporter:{version}").as_str(),
        format!("image is not xen-exporter:{version}"),
    );

    // Hardening: non-root (the image's own user), read-only root, no privilege escalation,
    // no capability, the runtime's seccomp profile.
    let (pod_sc, sc) = (&pod["securityContext"], &container["securityContext"]);
    let either = |field: &str| {
        if sc[field].is_null() {
            &pod_sc[field]
        } else {
            &sc[field]
        }
    };
    check(
        either("runAsNonRoot") == true,
        "runAsNonRoot is not true".into(),
    );
    check(
        user == "nonroot" && either("runAsUser") == 65532,
        format!("runAsUser is not 65532, the distroless nonroot user of the image (USER {user})"),
    );
    check(
        sc["readOnlyRootFilesystem"] == true,
        "readOnlyRootFilesystem is not true".into(),
    );
    check(
        sc["allowPrivilegeEscalation"] == false,
        "allowPrivilegeEscalation is not false".into(),
    );
    check(
        sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.contains(&json!("ALL"))),
        "capabilities do not drop ALL".into(),
    );
    check(
        either("seccompProfile")["type"] == "RuntimeDefault",
        "seccompProfile is not RuntimeDefault".into(),
    );

    // The port: the image's, named for the probes, the Service and the monitors.
    let listen = env(container, "PORT").map_or(Ok(9100), str::parse::<u64>);
    let container_port = container["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "metrics"))
        .and_then(|p| p["containerPort"].as_u64());
    check(
        container_port == Some(port) && listen == Ok(port),
        format!("the metrics port is {container_port:?} (PORT {listen:?}), the image's is {port}"),
    );
    let on_port = |p: &Value| p == "metrics" || p.as_u64() == Some(port);

    // Probes on the health endpoints, which never start a collection.
    for (probe, path) in [
        ("livenessProbe", "/-/healthy"),
        ("readinessProbe", "/-/ready"),
    ] {
        let get = &container[probe]["httpGet"];
        check(
            get["path"] == path && on_port(&get["port"]),
            format!("{probe} is not an httpGet of {path} on the metrics port"),
        );
    }

    for side in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            check(
                container["resources"][side][resource].is_string(),
                format!("no resources.{side}.{resource}"),
            );
        }
    }

    // Secrets as files only; where the settings come from.
    check(
        !has_env(container, "XEN_PASSWORD"),
        "XEN_PASSWORD in the environment: the password belongs in a Secret file".into(),
    );
    let secret_file = |path: &str, what: &str| match source_of(pod, container, path) {
        Ok((kind, name, key)) if kind == "Secret" => key_text(variant, "Secret", &name, &key)
            .err()
            .map(|why| format!("{what} {path}: {why}")),
        Ok((kind, name, _)) => Some(format!("{what} {path} is from {kind} {name}, not a Secret")),
        Err(why) => Some(format!("{what}: {why}")),
    };
    let mut pool_names = Vec::new();
    if let Some(config) = env(container, "XEN_CONFIG_FILE") {
        match source_of(pod, container, config).and_then(|(kind, name, key)| {
            if kind != "ConfigMap" {
                return Err(format!("from {kind} {name}, not a ConfigMap"));
            }
            pools(key_text(variant, "ConfigMap", &name, &key)?)
        }) {
            Ok(list) => {
                for (pool, password_file) in list {
                    if let Some(why) =
                        secret_file(&password_file, &format!("pool {pool} password_file"))
                    {
                        check(false, why);
                    }
                    pool_names.push(pool);
                }
            }
            Err(why) => check(false, format!("XEN_CONFIG_FILE {config}: {why}")),
        }
    } else {
        match env(container, "XEN_PASSWORD_FILE") {
            Some(path) => {
                if let Some(why) = secret_file(path, "XEN_PASSWORD_FILE") {
                    check(false, why);
                }
            }
            None => check(
                false,
                "neither XEN_PASSWORD_FILE nor XEN_CONFIG_FILE".into(),
            ),
        }
    }

    // The Service selects the pods; the ServiceMonitor selects the Service.
    let Ok(service) = variant.one("Service") else {
        check(false, "no single Service".into());
        return out;
    };
    check(
        selects(&service["spec"]["selector"], pod_labels),
        "the Service's selector does not match the pod labels".into(),
    );
    let service_ports: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    check(
        service_ports
            .iter()
            .any(|p| p["name"] == "metrics" && on_port(&p["targetPort"])),
        "the Service has no port metrics to the container's".into(),
    );
    match variant.one("ServiceMonitor") {
        Ok(monitor) => {
            check(
                monitor["apiVersion"] == "monitoring.coreos.com/v1",
                "ServiceMonitor apiVersion is not monitoring.coreos.com/v1".into(),
            );
            check(
                selects(
                    &monitor["spec"]["selector"]["matchLabels"],
                    &service["metadata"]["labels"],
                ),
                "the ServiceMonitor's selector does not match the Service's labels".into(),
            );
            let endpoints = monitor["spec"]["endpoints"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            check(
                !endpoints.is_empty(),
                "the ServiceMonitor has no endpoint".into(),
            );
            for endpoint in endpoints {
                check(
                    service_ports.iter().any(|p| p["name"] == endpoint["port"]),
                    format!(
                        "ServiceMonitor endpoint port {} is no port of the Service",
                        endpoint["port"]
                    ),
                );
                check(
                    endpoint["path"] == "/metrics",
                    "ServiceMonitor endpoint path is not /metrics".into(),
                );
            }
        }
        Err(why) => check(false, format!("ServiceMonitor: {why}")),
    }

    // Many pools: a Probe sends each pool name as a target to the Service's /probe.
    if !pool_names.is_empty() {
        match variant.one("Probe") {
            Ok(probe) => {
                let service_port = service_ports
                    .iter()
                    .find(|p| p["name"] == "metrics")
                    .and_then(|p| p["port"].as_u64())
                    .unwrap_or(0);
                let url = format!(
                    "{}.{namespace}.svc:{service_port}",
                    service["metadata"]["name"].as_str().unwrap_or("")
                );
                check(
                    probe["apiVersion"] == "monitoring.coreos.com/v1",
                    "Probe apiVersion is not monitoring.coreos.com/v1".into(),
                );
                check(
                    probe["spec"]["prober"]["url"] == url.as_str()
                        && probe["spec"]["prober"]["path"] == "/probe",
                    format!("the Probe's prober is not {url} /probe"),
                );
                let targets: Vec<&str> = probe["spec"]["targets"]["staticConfig"]["static"]
                    .as_array()
                    .map(|t| t.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                check(
                    targets == pool_names,
                    format!("the Probe's targets {targets:?} are not the pools {pool_names:?}"),
                );
            }
            Err(why) => check(false, format!("Probe: {why}")),
        }
    }
    out
}

#[test]
fn the_kubernetes_manifests_hold_every_point() {
    for name in VARIANTS {
        let variant = load(name);
        let found = problems(&variant);
        assert!(found.is_empty(), "{}", found.join("\n"));
    }
}

/// Edits the document of `kind` in a copy of `variant`.
fn edit(variant: &Variant, kind: &str, change: impl FnOnce(&mut Value)) -> Variant {
    let mut copy = variant.clone();
    let doc = copy
        .files
        .values_mut()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"));
    change(doc);
    copy
}

fn container(deployment: &mut Value) -> &mut Value {
    &mut deployment["spec"]["template"]["spec"]["containers"][0]
}

fn remove(value: &mut Value, key: &str) {
    value.as_object_mut().unwrap().remove(key);
}

#[test]
fn each_check_fails_without_its_point() {
    let single = load("single-pool");
    let many = load("many-pools");
    type Mutation = (&'static str, Variant);
    let mutations: Vec<Mutation> = vec![
        (
            "runAsNonRoot",
            edit(&single, "Deployment", |d| {
                remove(&mut container(d)["securityContext"], "runAsNonRoot");
                remove(
                    &mut d["spec"]["template"]["spec"]["securityContext"],
                    "runAsNonRoot",
                );
            }),
        ),
        (
            "runAsUser",
            edit(&single, "Deployment", |d| {
                d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = json!(0);
            }),
        ),
        (
            "readOnlyRootFilesystem",
            edit(&single, "Deployment", |d| {
                remove(
                    &mut container(d)["securityContext"],
                    "readOnlyRootFilesystem",
                );
            }),
        ),
        (
            "allowPrivilegeEscalation",
            edit(&single, "Deployment", |d| {
                container(d)["securityContext"]["allowPrivilegeEscalation"] = json!(true);
            }),
        ),
        (
            "drop ALL",
            edit(&single, "Deployment", |d| {
                container(d)["securityContext"]["capabilities"]["drop"] = json!(["NET_RAW"]);
            }),
        ),
        (
            "seccompProfile",
            edit(&single, "Deployment", |d| {
                remove(
                    &mut d["spec"]["template"]["spec"]["securityContext"],
                    "seccompProfile",
                );
            }),
        ),
        (
            "XEN_PASSWORD_FILE",
            edit(&single, "Deployment", |d| {
                let env = container(d)["env"].as_array_mut().unwrap();
                env.retain(|e| e["name"] != "XEN_PASSWORD_FILE");
            }),
        ),
        (
            "neither a Secret",
            edit(&single, "Deployment", |d| {
                d["spec"]["template"]["spec"]["volumes"][0] =
                    json!({"name": "xen-password", "emptyDir": {}});
            }),
        ),
        (
            "XEN_PASSWORD in the environment",
            edit(&single, "Deployment", |d| {
                let env = container(d)["env"].as_array_mut().unwrap();
                env.push(json!({"name": "XEN_PASSWORD", "value": "hunter2"}));
            }),
        ),
        (
            "/-/healthy",
            edit(&single, "Deployment", |d| {
                container(d)["livenessProbe"]["httpGet"]["path"] = json!("/metrics");
            }),
        ),
        (
            "/-/ready",
            edit(&single, "Deployment", |d| {
                remove(container(d), "readinessProbe")
            }),
        ),
        (
            "resources.limits.memory",
            edit(&single, "Deployment", |d| {
                remove(&mut container(d)["resources"]["limits"], "memory");
            }),
        ),
        (
            "resources.requests.cpu",
            edit(&single, "Deployment", |d| {
                remove(&mut container(d)["resources"]["requests"], "cpu");
            }),
        ),
        (
            "Service's selector",
            edit(&single, "Service", |s| {
                s["spec"]["selector"]["app.kubernetes.io/instance"] = json!("other");
            }),
        ),
        (
            "ServiceMonitor's selector",
            edit(&single, "ServiceMonitor", |m| {
                m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = json!("other");
            }),
        ),
        (
            "no port of the Service",
            edit(&single, "ServiceMonitor", |m| {
                m["spec"]["endpoints"][0]["port"] = json!("web");
            }),
        ),
        (
            "not /metrics",
            edit(&single, "ServiceMonitor", |m| {
                remove(&mut m["spec"]["endpoints"][0], "path");
            }),
        ),
        (
            "kustomization resources",
            edit(&single, "Kustomization", |k| {
                k["resources"].as_array_mut().unwrap().pop();
            }),
        ),
        (
            "Probe's targets",
            edit(&many, "Probe", |p| {
                p["spec"]["targets"]["staticConfig"]["static"] = json!(["lab"]);
            }),
        ),
        (
            "Probe's prober",
            edit(&many, "Probe", |p| {
                p["spec"]["prober"]["url"] = json!("xen-exporter-pools.default.svc:9100");
            }),
        ),
        (
            "pool prod password_file",
            edit(&many, "ConfigMap", |c| {
                let text = c["data"]["pools.yml"].as_str().unwrap();
                c["data"]["pools.yml"] = json!(text.replace("/run/secrets/xen/prod", "/etc/prod"));
            }),
        ),
        (
            "no key",
            edit(&many, "Secret", |s| remove(&mut s["stringData"], "prod")),
        ),
    ];
    for (point, variant) in mutations {
        let found = problems(&variant).join("\n");
        assert!(
            found.contains(point),
            "without {point:?} the checks should say so; they said: {found:?}"
        );
    }
}

/// The settings in the manifests are the exporter's: `--config.check` accepts the single
/// pool's environment and the many-pools ConfigMap's pools file, with the Secret's files
/// where the pods mount them (moved to a scratch directory).
#[tokio::test]
async fn the_exporter_accepts_the_manifests_settings() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let documented: BTreeSet<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let scratch = Scratch::new("deploy");
    let secrets = scratch.0.to_str().unwrap().to_string();

    let single = load("single-pool");
    let (_, container) = single.pod().unwrap();
    let mut settings: Vec<(String, String)> = Vec::new();
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        assert!(
            documented.contains(name),
            "{name} is no setting in the README"
        );
        let value = e["value"].as_str().unwrap();
        settings.push((name.into(), value.replace("/run/secrets/xen", &secrets)));
    }
    scratch.file("password", b"change-me\n");
    let env_refs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (code, stdout, stderr) = run_binary(&env_refs, &["--config.check"]).await;
    assert_eq!(code, 0, "single-pool settings: {stdout}{stderr}");
    assert!(stdout.contains("xen.mode           pool"), "{stdout}");

    let many = load("many-pools");
    let (_, container) = many.pod().unwrap();
    let text = key_text(&many, "ConfigMap", "xen-exporter-pools", "pools.yml").unwrap();
    for (pool, _) in pools(text).unwrap() {
        scratch.file(&pool, b"change-me");
    }
    let pools_file = scratch.file(
        "pools.yml",
        text.replace("/run/secrets/xen", &secrets).as_bytes(),
    );
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        assert!(
            documented.contains(name),
            "{name} is no setting in the README"
        );
    }
    assert_eq!(
        env(container, "XEN_CONFIG_FILE"),
        Some("/etc/xen-exporter/pools.yml")
    );
    let (code, stdout, stderr) =
        run_binary(&[], &["--config.check", "--config.file", &pools_file]).await;
    assert_eq!(code, 0, "many-pools pools file: {stdout}{stderr}");
    assert!(
        stdout.contains("2 pools from the configuration file"),
        "{stdout}"
    );
}
