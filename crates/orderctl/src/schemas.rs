//! `orderctl schemas register|check`.
//!
//! Subjects follow `TopicRecordNameStrategy`:
//! `<topic>-com.orderflow.events.<EventType>`. The schemas are the ones
//! built into the binary (what the services encode with) unless `--dir`
//! points at a directory of `<EventType>.avsc` files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use orderflow_events::registry::subject_name;
use orderflow_events::{EventType, TopicCatalog};

use crate::dlq::Registry;

const LEVELS: [&str; 7] = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
];

/// Options shared by `register` and `check`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    registry: Registry,
    /// Read `<EventType>.avsc` files from this directory instead of the
    /// schemas built into orderctl.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Compatibility level set on each subject by `register`.
    #[arg(long, default_value = "BACKWARD", value_parser = clap::builder::PossibleValuesParser::new(LEVELS))]
    compatibility: String,
}

fn load(args: &Args) -> anyhow::Result<Vec<(EventType, String)>> {
    let mut out = Vec::new();
    for &t in EventType::ALL {
        let text = match &args.dir {
            None => t.schema_json().to_owned(),
            Some(dir) => {
                let path = dir.join(format!("{}.avsc", t.name()));
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
            }
        };
        out.push((t, text));
    }
    if let Some(dir) = &args.dir {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if path.extension().and_then(|e| e.to_str()) == Some("avsc")
                && EventType::from_name(stem).is_none()
            {
                bail!("{} does not name a known event type", path.display());
            }
        }
    }
    Ok(out)
}

/// Registers every schema; fails (exit 1) on the first incompatible one.
pub async fn register(catalog: &TopicCatalog, args: &Args) -> anyhow::Result<ExitCode> {
    let client = args.registry.client()?;
    for (t, text) in load(args)? {
        let subject = subject_name(catalog.topic(t.stream()), &t.full_name());
        client
            .set_compatibility(&subject, &args.compatibility)
            .await
            .with_context(|| format!("setting compatibility of {subject}"))?;
        let compat = client
            .check_compatibility(&subject, &text)
            .await
            .with_context(|| format!("checking {subject}"))?;
        if !compat.is_compatible {
            eprintln!("incompatible {subject}: {}", compat.messages.join("; "));
            return Ok(ExitCode::from(1));
        }
        let id = client
            .register(&subject, &text)
            .await
            .with_context(|| format!("registering {subject}"))?;
        println!("registered {subject} id={id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks every schema; exit 1 when any is incompatible.
pub async fn check(catalog: &TopicCatalog, args: &Args) -> anyhow::Result<ExitCode> {
    let client = args.registry.client()?;
    let mut bad = 0;
    for (t, text) in load(args)? {
        let subject = subject_name(catalog.topic(t.stream()), &t.full_name());
        let compat = client
            .check_compatibility(&subject, &text)
            .await
            .with_context(|| format!("checking {subject}"))?;
        if compat.is_compatible {
            println!("compatible   {subject}");
        } else {
            bad += 1;
            println!("INCOMPATIBLE {subject}: {}", compat.messages.join("; "));
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
