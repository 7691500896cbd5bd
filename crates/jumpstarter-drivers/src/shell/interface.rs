//! The Shell interface, declared once, and `ShellClient` (the generated typed client plus
//! [`ShellClient::call`], which runs a method and hands its output to sinks).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use jumpstarter_core::interface::Items;
use jumpstarter_core::{ClientError, DriverError, Value};

/// The Shell driver's exported methods. A configured method is not a wire method of its
/// own: it runs through `call_method`, by name.
#[jumpstarter_core::interface(client = ShellClient)]
pub trait ShellInterface {
    /// List the configured shell methods
    async fn get_methods(&self) -> Result<Vec<String>, DriverError>;

    /// Run a configured shell method, streaming its output
    ///
    /// `method` and `env` are taken as they arrive (a non-string method or a null env get the
    /// driver's own messages), every further argument must be a string.
    #[streaming]
    fn call_method(
        self: Arc<Self>,
        #[nullable] method: Value,
        #[nullable] env: Value,
        #[rest] args: Vec<Value>,
    ) -> Result<Items<Value>, DriverError>;
}

/// What one finished call produced (see [`ShellClient::call_collect`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl ShellClient {
    /// Runs `method` with `args` and `env`, handing each stdout and stderr chunk to the sinks
    /// as it arrives; returns the script's return code (199 when it timed out, `-N` when it
    /// died of signal N).
    pub async fn call<O, E>(
        &self,
        method: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
        mut stdout: O,
        mut stderr: E,
    ) -> Result<i32, ClientError>
    where
        O: FnMut(&str),
        E: FnMut(&str),
    {
        let env = Value::Object(
            env.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        );
        let args = args.iter().cloned().map(Value::String).collect();
        let mut items = self
            .call_method(Value::String(method.to_owned()), env, args)
            .await?;
        let mut code = None;
        while let Some(item) = items.next().await {
            let item = item?;
            let (out, err, rc) = parse_item(&item).ok_or_else(|| {
                ClientError::shape("call_method", format!("not an output item: {item}"))
            })?;
            if !out.is_empty() {
                stdout(out);
            }
            if !err.is_empty() {
                stderr(err);
            }
            if rc.is_some() {
                code = rc;
            }
        }
        code.ok_or_else(|| {
            ClientError::shape("call_method", "the output ended without a return code")
        })
    }

    /// [`ShellClient::call`], with the output collected.
    pub async fn call_collect(
        &self,
        method: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<ShellOutput, ClientError> {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let code = self
            .call(
                method,
                args,
                env,
                |s| stdout.push_str(s),
                |s| stderr.push_str(s),
            )
            .await?;
        Ok(ShellOutput {
            stdout,
            stderr,
            code,
        })
    }
}

/// `[stdout, stderr, returncode]`: text (null taken as empty) and a whole number or null.
pub(crate) fn parse_item(v: &Value) -> Option<(&str, &str, Option<i32>)> {
    let [out, err, rc] = v.as_array()?.as_slice() else {
        return None;
    };
    fn text(t: &Value) -> Option<&str> {
        match t {
            Value::Null => Some(""),
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }
    let rc = match rc {
        Value::Null => None,
        Value::Number(n) => {
            let f = n.as_f64()?;
            if f.fract() != 0.0 || f < i32::MIN as f64 || f > i32::MAX as f64 {
                return None;
            }
            Some(f as i32)
        }
        _ => return None,
    };
    Some((text(out)?, text(err)?, rc))
}
