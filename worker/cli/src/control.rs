//! `weir list`, `weir savepoint`, `weir stop` and `weir cancel`: Flink's job-control commands,
//! over the REST API of a running `weir` process.

use anyhow::{Context, Result};
use std::time::Duration;
use weir_cluster::RestClient;
use weir_contract::client::ClientSecurity;
use weir_engine::config::Config;

/// How long `weir savepoint` and `weir stop` wait for the savepoint.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the REST API is.
#[derive(clap::Args)]
pub struct RestArgs {
    /// The REST API, `http://host:port` (default: `rest.address` and `rest.port` of
    /// `--config`/`WEIR_PROPERTIES`, port 8081 when unset).
    #[arg(long, short = 'm', value_name = "URL")]
    address: Option<String>,
    /// Config file to take `rest.address`, `rest.port` and the `security.*` keys (token
    /// file, TLS and CA file) from.
    #[arg(long, short, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

impl RestArgs {
    fn client(&self) -> Result<RestClient> {
        let address = self.address.clone().or_else(|| {
            std::env::var("WEIR_REST_URL")
                .ok()
                .filter(|a| !a.is_empty())
        });
        let config = Config::load(self.config.as_deref())?;
        // The same keys the server reads: its token, and TLS with the CA that signed its
        // certificate.
        let security = config.rest_security()?;
        let scheme = security.scheme();
        let url = match &address {
            Some(a) if a.contains("://") => a.clone(),
            Some(a) => format!("{scheme}://{a}"),
            None => {
                let rest = config.rest()?;
                format!(
                    "{scheme}://{}:{}",
                    rest.address,
                    rest.port.unwrap_or(weir_contract::rest::DEFAULT_PORT)
                )
            }
        };
        let client = RestClient::new(&url)?.with_security(&ClientSecurity {
            token: security.token.clone(),
            tls: security.client_tls()?,
            server_name: None,
        })?;
        Ok(client)
    }
}

fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    weir_engine::time::format_ts(ms)
}

pub fn list(rest: &RestArgs) -> Result<()> {
    let jobs = rest.client()?.jobs_overview()?;
    let (active, ended): (Vec<_>, Vec<_>) = jobs.iter().partition(|j| !j.state.is_terminal());
    for (title, jobs) in [
        ("Running/Restarting Jobs", active),
        ("Terminated Jobs", ended),
    ] {
        if jobs.is_empty() {
            println!("No {}.", title.to_lowercase());
            continue;
        }
        println!("------------------ {title} -------------------");
        for j in jobs {
            println!(
                "{} : {} : {} ({})",
                time(j.start_time),
                j.jid,
                j.name,
                j.state
            );
        }
    }
    Ok(())
}

pub fn savepoint(rest: &RestArgs, job: &str, target: Option<&str>) -> Result<()> {
    let client = rest.client()?;
    let trigger = client
        .trigger_savepoint(job, target, false)
        .with_context(|| format!("cannot trigger a savepoint of job {job}"))?;
    eprintln!(
        "Triggering savepoint for job {job} (trigger {trigger}); waiting for it to complete."
    );
    let location = client.wait_for_savepoint(job, &trigger, SAVEPOINT_TIMEOUT)?;
    println!("Savepoint completed. Path: {location}");
    eprintln!("Resume with: weir run <job> --from-savepoint {location}");
    Ok(())
}

pub fn stop(rest: &RestArgs, job: &str, target: Option<&str>, drain: bool) -> Result<()> {
    let client = rest.client()?;
    let trigger = client
        .stop(job, target, drain)
        .with_context(|| format!("cannot stop job {job}"))?;
    eprintln!(
        "Suspending job {job} with a savepoint{} (trigger {trigger}).",
        if drain {
            ", draining event time first"
        } else {
            ""
        }
    );
    let location = client.wait_for_savepoint(job, &trigger, SAVEPOINT_TIMEOUT)?;
    println!("Savepoint completed. Path: {location}");
    Ok(())
}

pub fn cancel(rest: &RestArgs, job: &str) -> Result<()> {
    rest.client()?
        .cancel(job)
        .with_context(|| format!("cannot cancel job {job}"))?;
    println!("Cancelled job {job}.");
    Ok(())
}
