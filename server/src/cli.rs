//! The `drivetag-server` command line. `main.rs` only calls [`main`], so tests can build the
//! same program.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::agents::{AgentConfigs, AgentDefaults};
use crate::config::ServerConfig;
use crate::import;
use crate::store::Store;

/// drivetag's dealership backend: ingests vehicle summaries over MQTT, labels customers and
/// picks the matching aftermarket strategy for each.
///
/// With no configuration it needs nothing installed: an embedded MQTT broker on
/// 127.0.0.1:1884 and a SQLite file, drivetag.sqlite, in the working directory.
#[derive(Debug, Parser)]
#[command(name = "drivetag-server", version, about, long_about)]
struct Cli {
    /// Log filter, e.g. `info` or `drivetag_server=debug`.
    #[arg(
        long,
        global = true,
        env = "DRIVETAG_LOG",
        default_value = "info,rumqttd=warn"
    )]
    log: String,
    /// The TOML configuration file (see deploy/server.example.toml); default: built-in defaults.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL, overriding database.url: sqlite://PATH or postgres://user@host/db.
    #[arg(long, global = true, env = "DRIVETAG_DATABASE_URL", value_name = "URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: MQTT ingest, storage and the HTTP API, until Ctrl-C or SIGTERM.
    ///
    /// Examples:
    ///   drivetag-server serve
    ///   drivetag-server serve --config /etc/drivetag/server.toml
    ///   drivetag-server serve --mqtt-url mqtt://127.0.0.1:1883 --database postgres://drivetag@db/drivetag
    #[command(verbatim_doc_comment)]
    Serve {
        /// Broker URL, overriding mqtt.url (empty: the embedded broker).
        #[arg(long, value_name = "URL")]
        mqtt_url: Option<String>,
        /// HTTP address, overriding http.listen.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// Embedded broker address, overriding mqtt.embedded_listen.
        #[arg(long, value_name = "ADDR")]
        embedded_mqtt: Option<std::net::SocketAddr>,
        /// Shared-subscription group, overriding mqtt.share_group.
        #[arg(long, value_name = "NAME")]
        share_group: Option<String>,
    },
    /// Import a CSV export of the dealer management system into the registry.
    ///
    /// Bad rows are reported with their line numbers and skipped; every good row is imported.
    /// Import in this order, since rows refer to earlier kinds: stores, pois, fleets,
    /// customers, vehicles, service_visits, campaign_responses.
    ///
    /// Columns (a header row is required; `?` marks a column that may be empty or absent):
    ///   stores              id, name, city, lat, lon, radius_m?
    ///   pois                id, name, kind, lat, lon, radius_m?
    ///                       (kind: competitor_dealer, independent_repair, premium, charging, other)
    ///   fleets              id, name
    ///   customers           id, name, phone?, email?, wechat?, opt_in?, birthday_month?,
    ///                       home_store_id?, fleet_id?, referrals?
    ///                       (opt_in: channels joined by ';' from push, sms, wechat, email, phone, mail)
    ///   vehicles            vin, device_id?, make, model, model_year, energy (ice, hev, phev, ev),
    ///                       price_class (economy, mid, premium, luxury), customer_id?, fleet_id?,
    ///                       store_id?, purchase_date?, warranty_end?, service_interval_km?,
    ///                       service_interval_months?
    ///   service_visits      vin, store_id, date (YYYY-MM-DD), spend, kind, odometer_km?
    ///                       (kind: maintenance, repair, tyres, brakes, insurance, warranty,
    ///                       accessories, detailing, other)
    ///   campaign_responses  customer_id, campaign, channel, sent_date, responded (yes/no)
    ///
    /// Exit status 2 when some rows were skipped.
    ///
    /// Example:
    ///   drivetag-server import stores stores.csv
    #[command(verbatim_doc_comment)]
    Import {
        /// stores, pois, fleets, customers, vehicles, service_visits or campaign_responses.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(import::KINDS))]
        kind: String,
        /// The CSV file, with a header row.
        file: PathBuf,
    },
    /// Recompute every customer's labels and next-best actions now.
    ///
    /// The server also relabels the vehicles that sent new data as it runs; this recomputes
    /// every vehicle, so percentile tiers are re-ranked against today's population.
    ///
    /// Examples:
    ///   drivetag-server relabel --rules my-rules.toml
    ///   drivetag-server relabel --vin LDTSX000100000007
    #[command(verbatim_doc_comment)]
    Relabel {
        /// The rules file; default: the shipped rules (see server/rules/default.toml).
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Label as of this day (YYYY-MM-DD) instead of today, e.g. to reproduce a past run.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Relabel only this vehicle, ranked against the population of the last full relabel
        /// (what the server does for vehicles with new data).
        #[arg(long, value_name = "VIN")]
        vin: Option<String>,
    },
    /// Work with labelling rules: check a file and preview its effect, or list the features.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Manage API keys: create (shown once), list, revoke.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Export labelled vehicles and their customers, streamed, as CSV (with a header row) or
    /// NDJSON.
    ///
    /// Examples:
    ///   drivetag-server export > all.csv
    ///   drivetag-server export --format ndjson --label "lifecycle=lost AND style=aggressive"
    ///   drivetag-server export --as fleet:taxi-co > taxi-co.csv
    #[command(verbatim_doc_comment)]
    Export {
        /// csv or ndjson.
        #[arg(long, default_value = "csv", value_parser = ["csv", "ndjson"])]
        format: String,
        /// Label filter, e.g. `lifecycle=lost AND style=aggressive`.
        #[arg(long)]
        label: Option<String>,
        /// Export what this role sees: admin (everything), store:<id> or fleet:<id>.
        #[arg(long = "as", default_value = "admin", value_name = "ROLE")]
        role: String,
    },
    /// Check a configuration file and print it with every default filled in.
    CheckConfig,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once, and only its hash is stored.
    ///
    /// Example:
    ///   drivetag-server keys create --role fleet:taxi-co --name "Taxi Co reporting"
    #[command(verbatim_doc_comment)]
    Create {
        /// admin, store:<store id> or fleet:<fleet id>.
        #[arg(long)]
        role: String,
        /// A name for people.
        #[arg(long)]
        name: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by its id (the part after `dt_`, before the second `_`).
    Revoke {
        /// The key's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Check a rules file, and show how many customers each label and strategy would gain and
    /// lose against the labels in force, without changing them.
    ///
    /// Example:
    ///   drivetag-server rules check my-rules.toml
    #[command(verbatim_doc_comment)]
    Check {
        /// The rules file.
        file: PathBuf,
    },
    /// List the features conditions may use, with their meaning and unit.
    Features,
    /// Print the shipped default rules, to start a file of your own.
    Defaults,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("drivetag-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<ServerConfig> {
    let mut config = match &cli.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };
    if let Some(url) = &cli.database {
        config.database.url = url.clone();
    }
    Ok(config)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = load(&cli)?;
    match cli.command {
        Command::CheckConfig => {
            println!("{config:#?}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            mqtt_url,
            http,
            embedded_mqtt,
            share_group,
        } => {
            if let Some(group) = share_group {
                config.mqtt.share_group = group;
            }
            if let Some(url) = mqtt_url {
                config.mqtt.url = url;
            }
            if let Some(http) = http {
                config.http.listen = http;
            }
            if let Some(address) = embedded_mqtt {
                config.mqtt.embedded_listen = address;
            }
            runtime()?.block_on(async move {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let (running, server) = crate::serve::start(&config, stop_rx).await?;
                // One line a script can read: where to connect.
                println!(
                    "drivetag-server listening: http://{} mqtt://{}:{}",
                    running.http, running.mqtt.0, running.mqtt.1
                );
                shutdown_signal().await;
                tracing::info!("Shutting down.");
                let _ = stop_tx.send(true);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Relabel { rules, as_of, vin } => runtime()?.block_on(async move {
            let rules = load_rules(rules.as_deref())?;
            let day = match as_of {
                Some(date) => crate::labels::engine::Day::from_number(
                    crate::store::registry::day_number(&date)
                        .with_context(|| format!("--as-of {date:?} is not a date (YYYY-MM-DD)"))?,
                ),
                None => crate::labels::engine::Day::today_in(&config.agents.time_zone),
            };
            let store = Store::open(&config.database.url)
                .await
                .with_context(|| format!("database {}", config.database.url))?;
            let started = std::time::Instant::now();
            let scope = match vin {
                Some(vin) => crate::labels::engine::Scope::Vin(vin),
                None => crate::labels::engine::Scope::All,
            };
            let vehicles = crate::labels::engine::relabel(&store, &rules, &scope, day, |step| {
                eprintln!(
                    "[{}/{}] {:<10} {:>10} rows {:>8.2} s",
                    step.number, step.of, step.name, step.rows, step.seconds
                );
            })
            .await?;
            println!(
                "relabelled {vehicles} vehicles in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Rules { command } => match command {
            RulesCommand::Features => {
                for (name, text, description) in crate::labels::engine::feature_names() {
                    println!(
                        "{name:<26} {:<6} {description}",
                        if text { "text" } else { "number" }
                    );
                }
                for (name, description) in crate::labels::features::CONTEXT {
                    println!("{name:<26} {:<6} {description}", "number");
                }
                Ok(ExitCode::SUCCESS)
            }
            RulesCommand::Defaults => {
                print!("{}", crate::labels::rules::DEFAULT_RULES);
                Ok(ExitCode::SUCCESS)
            }
            RulesCommand::Check { file } => runtime()?.block_on(async move {
                let rules = load_rules(Some(&file))?;
                println!(
                    "{}: valid: {} tiers, {} label groups, {} strategies",
                    file.display(),
                    rules.tiers.len(),
                    rules.groups.len(),
                    rules.strategies.len()
                );
                let store = Store::open(&config.database.url)
                    .await
                    .with_context(|| format!("database {}", config.database.url))?;
                let preview = crate::labels::preview(
                    &store,
                    &rules,
                    crate::labels::engine::Day::today_in(&config.agents.time_zone),
                )
                .await?;
                print!("{preview}");
                Ok(ExitCode::SUCCESS)
            }),
        },
        Command::Keys { command } => runtime()?.block_on(async move {
            use crate::service::access::{Keys, Role};
            let store = Store::open(&config.database.url)
                .await
                .with_context(|| format!("database {}", config.database.url))?;
            match command {
                KeysCommand::Create { role, name } => {
                    let role = Role::parse(&role).map_err(anyhow::Error::msg)?;
                    let key = Keys::create(&store, &role, &name).await?;
                    println!("{key}");
                    eprintln!(
                        "Keep this key: it is shown once. Use it as `Authorization: Bearer {key}`."
                    );
                }
                KeysCommand::List => {
                    for key in Keys::list(&store).await? {
                        let state = key
                            .revoked_s
                            .map_or("active".to_owned(), |s| format!("revoked at {s}"));
                        println!("{:<14} {:<20} {:<30} {state}", key.id, key.role, key.name);
                    }
                }
                KeysCommand::Revoke { id } => {
                    if Keys::revoke(&store, &id).await? {
                        println!("revoked {id}");
                    } else {
                        anyhow::bail!("no active key {id}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Export {
            format,
            label,
            role,
        } => runtime()?.block_on(async move {
            use std::io::Write;
            let role = crate::service::access::Role::parse(&role).map_err(anyhow::Error::msg)?;
            let caller = crate::service::access::Caller {
                key_id: "cli".into(),
                role,
            };
            let store = Store::open(&config.database.url)
                .await
                .with_context(|| format!("database {}", config.database.url))?;
            let format = if format == "ndjson" {
                crate::service::export::Format::Ndjson
            } else {
                crate::service::export::Format::Csv
            };
            let started = std::time::Instant::now();
            let mut export =
                crate::service::export::Export::start(store, caller, label, format).await?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = export.next_chunk().await? {
                if let Err(error) = out.write_all(&chunk) {
                    if error.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(ExitCode::SUCCESS);
                    }
                    return Err(error.into());
                }
            }
            out.flush()?;
            eprintln!(
                "exported {} vehicles in {:.2} s",
                export.rows,
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Import { kind, file } => runtime()?.block_on(async move {
            let store = Store::open(&config.database.url)
                .await
                .with_context(|| format!("database {}", config.database.url))?;
            let ids = store.registry_ids().await?;
            let reader = std::fs::File::open(&file).with_context(|| file.display().to_string())?;
            let parsed = import::parse(&kind, std::io::BufReader::new(reader), &ids)
                .with_context(|| file.display().to_string())?;
            for bad in &parsed.bad {
                eprintln!("{}:{}: {}", file.display(), bad.line, bad.reason);
            }
            let imported = store.import(&parsed.rows).await?;
            println!(
                "{kind}: {imported} rows imported, {} rows skipped",
                parsed.bad.len()
            );
            if matches!(kind.as_str(), "stores" | "pois") {
                let defaults = AgentDefaults {
                    time_zone: config.agents.time_zone.clone(),
                    cell_size_m: config.agents.cell_size_m,
                };
                let configs = AgentConfigs::load(&store, &defaults).await?;
                println!(
                    "agent configuration revision {}: running servers send it to the agents",
                    configs.revision()
                );
            }
            Ok(if parsed.bad.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }),
    }
}

fn load_rules(path: Option<&std::path::Path>) -> anyhow::Result<crate::labels::rules::Rules> {
    match path {
        None => Ok(crate::labels::rules::Rules::defaults()),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            Ok(crate::labels::rules::Rules::parse(
                &text,
                &path.display().to_string(),
            )?)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
