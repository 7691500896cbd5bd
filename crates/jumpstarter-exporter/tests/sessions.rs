//! Drivers are built per session: fresh instances and uuids, `reset()` before the first call,
//! `close()` once per instance when the session ends; the exporter uuid stays the same.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use jumpstarter_config::ExporterConfig;
use jumpstarter_core::{Driver, DriverError, LogHub, Registry};
use jumpstarter_exporter::Exporter;

#[derive(Default)]
struct Counts {
    built: AtomicUsize,
    resets: AtomicUsize,
    closes: AtomicUsize,
}

struct Counter(Arc<Counts>);

#[async_trait]
impl Driver for Counter {
    fn client(&self) -> &str {
        "test.CounterClient"
    }
    async fn reset(&self) -> Result<(), DriverError> {
        self.0.resets.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn close(&self) {
        self.0.closes.fetch_add(1, Ordering::SeqCst);
    }
}

const CONFIG: &str = "metadata: {name: x}
export:
  counter:
    type: test.Counter
  alias:
    ref: counter
  power:
    type: jumpstarter_driver_power.driver.MockPower
";

#[tokio::test]
async fn every_session_gets_fresh_drivers() {
    let counts = Arc::new(Counts::default());
    let mut registry = jumpstarter_drivers::builtin();
    let c = counts.clone();
    registry.driver("test.Counter", move |_| {
        c.built.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Counter(c.clone())) as Arc<dyn Driver>)
    });
    let config = ExporterConfig::parse(CONFIG, Path::new("x.yaml")).unwrap();
    let exporter = Exporter::new(config, registry).await.unwrap();
    // Loading checks the config by building the tree once (and closing it).
    assert_eq!(counts.built.load(Ordering::SeqCst), 1);
    assert_eq!(counts.closes.load(Ordering::SeqCst), 1);

    let s1 = exporter.new_session(LogHub::new()).await.unwrap();
    let s2 = exporter.new_session(LogHub::new()).await.unwrap();
    assert_eq!(counts.built.load(Ordering::SeqCst), 3);
    // The alias shares the instance: one reset per session, not two.
    assert_eq!(counts.resets.load(Ordering::SeqCst), 2);
    let uuids = |s: &jumpstarter_core::Session| -> Vec<String> {
        s.report().reports.iter().map(|r| r.uuid.clone()).collect()
    };
    let (u1, u2) = (uuids(&s1), uuids(&s2));
    assert!(
        u1.iter().all(|u| !u2.contains(u)),
        "driver uuids differ between sessions"
    );
    assert_eq!(
        s1.report().uuid,
        s2.report().uuid,
        "the exporter uuid is per process"
    );
    assert_eq!(s1.report().uuid, exporter.uuid().to_string());

    s1.close().await;
    s1.close().await;
    assert_eq!(
        counts.closes.load(Ordering::SeqCst),
        2,
        "close once per instance, once per session"
    );
    s2.close().await;
    assert_eq!(counts.closes.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn typos_of_builtin_types_fail_when_loading() {
    // Other unknown types run in a driver host (tests/driver_host.rs); a near miss of a
    // built-in class of the same module is a typo.
    let config = ExporterConfig::parse(
        "metadata: {name: x}\nexport:\n  power:\n    type: test.Countr\n",
        Path::new("x.yaml"),
    )
    .unwrap();
    let mut registry = Registry::new();
    registry.register("test.Counter", |_| {
        Ok(Arc::new(Counter(Arc::default())) as Arc<dyn Driver>)
    });
    let err = match Exporter::new(config, registry).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a typo of a built-in type must not load"),
    };
    assert!(
        err.starts_with(
            "x.yaml:4:11: unknown driver type `test.Countr`; did you mean `test.Counter`?"
        ),
        "{err}"
    );
}
