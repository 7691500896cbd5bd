//! Driver hosts with the pinned upstream Jumpstarter 0.9.0 (`JMP_INTEROP_VENV`, else the
//! workspace's `.venv`): a vendor package written by the test, served through our exporter
//! next to built-in drivers, and every way a host can fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jumpstarter_config::ExporterConfig;
use jumpstarter_core::LogHub;
use jumpstarter_core::client::{Client, ClientError, Code};
use jumpstarter_core::transport::Target;
use jumpstarter_exporter::{Exporter, LocalSession};
use jumpstarter_testkit::{py, workspace_root};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A temp dir holding the vendor package and a `python` that finds it (the venv's python with
/// PYTHONPATH set: the exporter passes its own environment to hosts).
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkgs/vendorpackage");
        std::fs::create_dir_all(&pkg).unwrap();
        for f in ["__init__.py", "client.py"] {
            std::fs::copy(
                workspace_root().join("tests/interop/vendorpackage").join(f),
                pkg.join(f),
            )
            .unwrap();
        }
        let wrapper = dir.path().join("python");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nPYTHONPATH='{}' exec '{}' \"$@\"\n",
                dir.path().join("pkgs").display(),
                py().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Lab { dir }
    }

    fn python(&self) -> PathBuf {
        self.dir.path().join("python")
    }

    async fn exporter(&self, python: &Path, export: &str) -> Exporter {
        let text = format!(
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {{name: lab}}\n\
             driverHost:\n  python: {}\nexport:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n{export}",
            python.display()
        );
        let cfg = ExporterConfig::parse(&text, Path::new("lab.yaml")).unwrap();
        let mut e = Exporter::new(cfg, jumpstarter_drivers::builtin())
            .await
            .unwrap();
        e.host_options_mut().start_timeout = Duration::from_secs(120);
        e
    }
}

const CUSTOM: &str =
    "  custom:\n    type: vendorpackage.CustomDriver\n    config: {hello: world}\n";

async fn connect(s: &LocalSession) -> Client {
    Client::connect(&Target::Unix(s.path().to_owned()))
        .await
        .unwrap()
}

fn call_error(r: Result<Value, ClientError>) -> (Code, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => {
            let c = e
                .as_call()
                .unwrap_or_else(|| panic!("not a call error: {e}"));
            (c.code, c.message.clone())
        }
    }
}

/// The built-in part keeps serving whatever happened to the host.
async fn power_works(client: &Client) {
    let p = client.get("power").unwrap();
    p.call("on", vec![]).await.unwrap();
    p.call("off", vec![]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn vendor_driver_serves_every_call_kind_next_to_native_drivers() {
    let lab = Lab::new();
    let exporter = lab
        .exporter(
            &lab.python(),
            &format!("{CUSTOM}  alias:\n    ref: custom\n"),
        )
        .await;
    let session = exporter.start_local(LogHub::new()).await.unwrap();
    let client = connect(&session).await;
    let custom = client.get("custom").unwrap();
    assert_eq!(custom.client_class(), "vendorpackage.client.CustomClient");
    // The alias (a built-in ref to a hosted node) is the same instance.
    assert_eq!(client.get("alias").unwrap().uuid(), custom.uuid());
    assert_eq!(
        custom.call("greet", vec![json!("bob")]).await.unwrap(),
        json!("world, bob")
    );
    assert_eq!(
        client
            .get("alias")
            .unwrap()
            .call("greet", vec![json!("eve")])
            .await
            .unwrap(),
        json!("world, eve")
    );
    let items = custom
        .streaming_call_collect("count", vec![json!(3)])
        .await
        .unwrap();
    assert_eq!(
        items,
        vec![
            json!({"i": 0, "hello": "world"}),
            json!({"i": 1, "hello": "world"}),
            json!({"i": 2, "hello": "world"})
        ]
    );
    let mut s = custom.stream("connect").await.unwrap();
    s.write_all(b"ping through a host").await.unwrap();
    let mut buf = vec![0u8; 19];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, b"ping through a host");
    drop(s);
    // Errors keep their codes and texts.
    let (code, msg) = call_error(custom.call("fail", vec![json!("bad value")]).await);
    assert_eq!((code, msg.as_str()), (Code::InvalidArgument, "bad value"));
    let (code, msg) = call_error(custom.call("nope", vec![]).await);
    assert_eq!(code, Code::NotFound, "{msg}");
    power_works(&client).await;
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_reach_hosted_drivers_decoded_and_resets_end_them() {
    let lab = Lab::new();
    let exporter = lab.exporter(&lab.python(), CUSTOM).await;
    let session = exporter.start_local(LogHub::new()).await.unwrap();
    let client = connect(&session).await;
    let custom = client.get("custom").unwrap().clone();
    // A gzip upload: the host accepts the encoding and its driver reads the plain bytes.
    let plain: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
    let mut gz = Vec::new();
    {
        let mut enc = jumpstarter_core::resource::encoding::encoder(
            jumpstarter_core::Encoding::Gzip,
            &mut gz,
        );
        enc.write_all(&plain).await.unwrap();
        enc.shutdown().await.unwrap();
    }
    let mut res = custom
        .resource(Some(jumpstarter_core::Encoding::Gzip))
        .await
        .unwrap();
    assert_eq!(res.accept.as_deref(), Some("gzip"));
    assert_eq!(res.handle["x_jmp_content_encoding"], "gzip");
    let handle = res.handle.clone();
    let call = tokio::spawn({
        let custom = custom.clone();
        async move { custom.call("consume", vec![handle]).await }
    });
    res.stream.write_all(&gz).await.unwrap();
    res.stream.shutdown().await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), json!(plain.len()));
    drop(res);
    // An upload the client resets half way: the relay resets the host's stream, and the call
    // ends. Upstream 0.9.0's session reads a reset resource stream as its end, so the driver
    // sees the bytes that arrived (its own exporter does the same with the same client).
    let mut res = custom.resource(None).await.unwrap();
    res.stream.write_all(&[7u8; 100_000]).await.unwrap();
    let handle = res.handle.clone();
    let call = tokio::spawn({
        let custom = custom.clone();
        async move { custom.call("consume", vec![handle]).await }
    });
    // Let the call start reading before the reset.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(res);
    let r = call.await.unwrap();
    assert_eq!(r.unwrap(), json!(100_000));
    power_works(&client).await;
    assert_eq!(
        custom.call("greet", vec![json!("after")]).await.unwrap(),
        json!("world, after")
    );
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_logs_reach_log_stream() {
    let lab = Lab::new();
    let exporter = lab.exporter(&lab.python(), CUSTOM).await;
    let logs = LogHub::new();
    let session = exporter.start_local(logs.clone()).await.unwrap();
    let client = connect(&session).await;
    let (_, mut rx) = logs.subscribe();
    client
        .get("custom")
        .unwrap()
        .call("greet", vec![json!("logger")])
        .await
        .unwrap();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let r = rx.recv().await.unwrap();
            if r.message.contains("greeting logger") {
                return r;
            }
        }
    })
    .await
    .expect("the driver's log record reaches the session's log stream");
    assert_eq!(found.level, jumpstarter_core::Level::Info);
    session.stop().await;
}

async fn unavailable_subtree(exporter: &Exporter) -> (String, String) {
    let session = exporter.start_local(LogHub::new()).await.unwrap();
    let client = connect(&session).await;
    let custom = client.get("custom").expect("the stand-in is reported");
    assert_eq!(custom.client_class(), "jumpstarter.client.DriverClient");
    let description = custom.description().unwrap_or_default().to_owned();
    let (code, msg) = call_error(custom.call("greet", vec![json!("x")]).await);
    assert_eq!(code, Code::Unavailable, "{msg}");
    power_works(&client).await;
    session.stop().await;
    (description, msg)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_python() {
    let lab = Lab::new();
    let missing = lab.dir.path().join("no-such-python3");
    let exporter = lab.exporter(&missing, CUSTOM).await;
    let (description, msg) = unavailable_subtree(&exporter).await;
    assert!(
        msg.starts_with("driver host for `custom` is unavailable: Python `"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "no-such-python3` (from driverHost.python in the exporter config) was not found"
        ),
        "{msg}"
    );
    assert!(msg.contains("JMP_DRIVER_HOST_PYTHON"), "{msg}");
    assert!(
        description.starts_with("unavailable: Python `"),
        "{description}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_without_jumpstarter() {
    let lab = Lab::new();
    // A bare interpreter: the venv's python with -S would still find site-packages through
    // pyvenv.cfg, so use the base interpreter the venv was made from, isolated (-I ignores
    // PYTHONPATH and user site-packages).
    let base = std::process::Command::new(py())
        .args(["-c", "import sys; print(sys._base_executable)"])
        .output()
        .unwrap();
    let base = String::from_utf8(base.stdout).unwrap().trim().to_owned();
    let wrapper = lab.dir.path().join("bare-python");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec '{base}' -I -S \"$@\"\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exporter = lab.exporter(&wrapper, CUSTOM).await;
    let (_, msg) = unavailable_subtree(&exporter).await;
    assert!(
        msg.contains("cannot load the upstream jumpstarter library"),
        "{msg}"
    );
    assert!(msg.contains("-m pip install 'jumpstarter==0.9.0'"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn vendor_package_missing() {
    let lab = Lab::new();
    let exporter = lab
        .exporter(
            &lab.python(),
            "  custom:\n    type: acme_lab_drivers.relays.Relay\n    config: {hello: world}\n",
        )
        .await;
    let (_, msg) = unavailable_subtree(&exporter).await;
    assert!(
        msg.contains("driver `custom` (type `acme_lab_drivers.relays.Relay`): Python package `acme_lab_drivers` is not installed in "),
        "{msg}"
    );
    assert!(msg.contains("-m pip install 'acme-lab-drivers'"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn constructor_raising_on_config() {
    let lab = Lab::new();
    let exporter = lab
        .exporter(
            &lab.python(),
            "  custom:\n    type: vendorpackage.CustomDriver\n    config: {hello: explode}\n",
        )
        .await;
    let (_, msg) = unavailable_subtree(&exporter).await;
    assert!(
        msg.contains("building the drivers failed: ValueError"),
        "{msg}"
    );
    assert!(msg.contains("hello must not be 'explode'"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_crash_mid_call_then_next_session_restarts_it() {
    let lab = Lab::new();
    let exporter = lab.exporter(&lab.python(), CUSTOM).await;
    let session = exporter.start_local(LogHub::new()).await.unwrap();
    let client = connect(&session).await;
    let custom = client.get("custom").unwrap();
    let first_uuid = custom.uuid().to_owned();
    let (code, msg) = call_error(custom.call("crash", vec![]).await);
    assert_eq!(code, Code::Unavailable, "{msg}");
    assert!(
        msg.starts_with(
            "driver host for `custom` is unavailable: the host process exited (exit status: 17)"
        ),
        "{msg}"
    );
    // Later calls fail the same way; the rest serves.
    let (code, _) = call_error(custom.call("greet", vec![json!("x")]).await);
    assert_eq!(code, Code::Unavailable);
    power_works(&client).await;
    session.stop().await;
    // The next session has a new host (and new driver instances, as built-in drivers do).
    let session = exporter.start_local(LogHub::new()).await.unwrap();
    let client = connect(&session).await;
    assert_ne!(client.get("custom").unwrap().uuid(), first_uuid);
    assert_eq!(
        client
            .get("custom")
            .unwrap()
            .call("greet", vec![json!("again")])
            .await
            .unwrap(),
        json!("world, again")
    );
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_hang_mid_call_then_next_session_restarts_it() {
    let lab = Lab::new();
    let mut exporter = lab.exporter(&lab.python(), CUSTOM).await;
    exporter.host_options_mut().hang_timeout = Duration::from_secs(2);
    let session = exporter.start_local(LogHub::new()).await.unwrap();
    let client = connect(&session).await;
    let custom = client.get("custom").unwrap();
    let (code, msg) = call_error(custom.call("freeze", vec![]).await);
    assert_eq!(code, Code::Unavailable, "{msg}");
    assert!(msg.contains("the host stopped answering"), "{msg}");
    power_works(&client).await;
    session.stop().await;
    let session = exporter.start_local(LogHub::new()).await.unwrap();
    let client = connect(&session).await;
    assert_eq!(
        client
            .get("custom")
            .unwrap()
            .call("greet", vec![json!("again")])
            .await
            .unwrap(),
        json!("world, again")
    );
    session.stop().await;
}

#[tokio::test]
async fn refs_out_of_a_hosted_subtree_are_rejected_when_loading() {
    let text = "metadata: {name: lab}\nexport:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n  custom:\n    type: vendorpackage.CustomDriver\n    children:\n      p:\n        ref: power\n";
    let cfg = ExporterConfig::parse(text, Path::new("lab.yaml")).unwrap();
    let err = match Exporter::new(cfg, jumpstarter_drivers::builtin()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a ref out of a hosted subtree must not load"),
    };
    assert!(
        err.starts_with("lab.yaml:9:14: `ref: power` inside `custom` points outside it"),
        "{err}"
    );
}
