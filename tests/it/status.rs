//! The status page `/`: each pool's hosts and whether they answered the last collection (and
//! why not), when it ran, the TLS mode and the links; a pool never probed is "not started";
//! every value escaped, UUIDs hashed with `XEN_HASH_UUIDS`; reading it never collects.

use std::collections::BTreeMap;

use xapi_sim::{HostFault, Sim, SimConfig};
use xen_exporter::config::{Mode, PoolConfig, SecretBytes};
use xen_exporter::server::Exposure;
use xen_exporter::{Pools, WebOptions};

use crate::harness::{TestEnv, pool_config};

async fn page(env: &TestEnv) -> String {
    let response = env.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    response.text().await.unwrap()
}

/// What the simulator was asked: RPC calls (but the event stream's long polls, which come
/// back by themselves) and `/rrd_updates` requests.
fn calls(sim: &Sim) -> (BTreeMap<String, u64>, Vec<u64>) {
    let mut counters = sim.counters();
    counters.rpc.remove("event.from");
    (counters.rpc, counters.rrd_updates)
}

#[tokio::test]
async fn a_down_host_is_named_with_its_reason_and_reading_the_page_collects_nothing() {
    let env = TestEnv::start(SimConfig {
        hosts: 3,
        ..SimConfig::default()
    })
    .await;
    let hostile = "<script>alert(\"x\")</script> & 'co'";
    env.sim.set_host_name(2, hostile);
    env.scrape_until("the new host name", |scrape| {
        match scrape.value("xen_host_up", &[("host", hostile)]) {
            Some(_) => Ok(()),
            None => Err("not renamed yet".to_string()),
        }
    })
    .await;
    let view = env.sim.view();
    env.sim.set_host_fault(1, HostFault::Http500);
    env.scrape().await;

    // The page reads what that scrape left, however often it is opened.
    let before = calls(&env.sim);
    let first = page(&env).await;
    let again = page(&env).await;
    assert_eq!(calls(&env.sim), before, "opening / called XAPI");
    let started = |page: &str| {
        page.split("started ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .map(str::to_string)
            .unwrap()
    };
    assert_eq!(started(&again), started(&first));

    let down = &view.hosts[1];
    let row = |name: &str, uuid: &str, address: &str| {
        format!("<tr><td>{name}</td><td>{uuid}</td><td>{address}</td>")
    };
    assert!(
        first.contains(&format!(
            "{}<td class=\"down\">down</td><td>http_5xx</td></tr>",
            row(&down.name, &down.uuid, &down.address)
        )),
        "{first}"
    );
    let up = &view.hosts[0];
    assert!(
        first.contains(&format!(
            "{}<td>up</td>",
            row(&up.name, &up.uuid, &up.address)
        )),
        "{first}"
    );
    assert!(first.contains("2 of 3 hosts answered"), "{first}");
    // The collection's start, in UTC, to the second.
    let started = started(&first);
    assert_eq!(started.len(), "2026-01-01T00:00:07Z".len(), "{started}");
    assert!(started.ends_with('Z') && started.as_bytes()[10] == b'T');
    assert!(first.contains("mode=\"ca_file\""), "{first}");
    // The hostile name is text, not markup.
    assert!(first.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;"));
    assert!(!first.contains("<script"));
    assert!(!first.contains(env.sim.password()));
    for link in ["metrics", "-/healthy", "-/ready"] {
        assert!(first.contains(&format!("<a href=\"{link}\">")), "{link}");
    }
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn a_pool_never_probed_is_not_started_and_uuids_are_hashed() {
    let (a, b) = (
        Sim::start(SimConfig::default()).await.unwrap(),
        Sim::start(SimConfig::default()).await.unwrap(),
    );
    let named = |sim: &Sim, name: &str| PoolConfig {
        name: name.into(),
        hash_uuids_key: Some(SecretBytes::new(&b"status-page-key-0123456789"[..])),
        ..pool_config(sim, Mode::Pool)
    };
    let pools = Pools {
        configs: vec![named(&a, "alpha"), named(&b, "beta")],
        exposure: Exposure::ProbePerPool,
        ..Pools::single(named(&a, "alpha"))
    };
    let env = TestEnv::start_pools(a.clone(), pools, WebOptions::default()).await;
    let unprobed = page(&env).await;
    assert_eq!(
        unprobed.matches("Last collection: not started").count(),
        2,
        "{unprobed}"
    );
    assert_eq!(
        a.counters().logins + b.counters().logins,
        0,
        "nothing started"
    );

    // Read whole: the collection ends before the last of the response.
    let probe = env.get("/probe?target=alpha").await;
    assert_eq!(probe.status(), 200);
    assert!(probe.text().await.unwrap().contains("xen_host_up"));
    let probed = page(&env).await;
    let (alpha, beta) = probed.split_once("<h2>Pool beta</h2>").unwrap();
    assert!(alpha.contains("<a href=\"probe?target=alpha\">"), "{alpha}");
    assert!(alpha.contains("2 of 2 hosts answered"), "{alpha}");
    assert!(beta.contains("Last collection: not started"), "{beta}");
    assert!(beta.contains("<a href=\"probe?target=beta\">"), "{beta}");
    for host in a.view().hosts {
        assert!(!probed.contains(&host.uuid), "{} shows", host.uuid);
        assert!(probed.contains(&format!("<td>{}</td>", host.name)));
    }
    let hashes = alpha
        .split("<td>")
        .filter_map(|cell| cell.split("</td>").next())
        .filter(|cell| cell.len() == 32 && cell.bytes().all(|c| c.is_ascii_hexdigit()))
        .count();
    assert_eq!(hashes, 2, "{alpha}");
    env.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}
