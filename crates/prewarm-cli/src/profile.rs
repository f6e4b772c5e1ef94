//! `prewarm profile`: GPU profiles (token rates and prices) from load tests, in files and in the
//! database; and how `simulate`, `tune` and `fleet` find a profile by name or file.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use clap::Subcommand;
use prewarm_planner::profile::{from_vllm_bench, BenchRun, ProfileFile};
use prewarm_planner::GpuProfile;
use prewarm_store::Actor;

use crate::database::{connect, runtime, DbArgs};

/// The profiles compiled into the binary (`profiles/examples.toml`).
const BUNDLED: &str = include_str!("../../../profiles/examples.toml");

/// The bundled profiles, checked.
pub(crate) fn bundled() -> Vec<GpuProfile> {
    let file: ProfileFile = toml::from_str(BUNDLED).expect("the bundled profiles parse");
    file.check().expect("the bundled profiles are valid");
    file.profiles
}

/// The bundled profile whose prefill:decode ratio `simulate` assumes for a token trace given no
/// rates.
pub(crate) fn bundled_default() -> GpuProfile {
    bundled().remove(0)
}

/// Reads a profiles file: `[[profile]]` tables, every one checked, names unique.
pub(crate) fn read_file(path: &Path) -> anyhow::Result<Vec<GpuProfile>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: ProfileFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a profiles file ({}); it holds [[profile]] tables with name, prefill_tps and decode_tps",
            path.display(),
            e.message()
        )
    })?;
    file.check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    ensure!(
        !file.profiles.is_empty(),
        "{}: no [[profile]] in it",
        path.display()
    );
    Ok(file.profiles)
}

/// The profiles `--gpu-profile` names: a file's (all, or `FILE:NAME` for one), or a bundled
/// profile by name.
pub(crate) fn resolve(spec: &str) -> anyhow::Result<Vec<GpuProfile>> {
    let path = Path::new(spec);
    if path.is_file() {
        return read_file(path);
    }
    if let Some((file, name)) = spec.rsplit_once(':') {
        if Path::new(file).is_file() {
            let all = read_file(Path::new(file))?;
            let names: Vec<String> = all.iter().map(|p| p.name.clone()).collect();
            return match all.into_iter().find(|p| p.name == name) {
                Some(p) => Ok(vec![p]),
                None => bail!(
                    "{file} has no profile `{}` (it has {})",
                    prewarm_core::shorten(name, 60),
                    names.join(", ")
                ),
            };
        }
    }
    let all = bundled();
    let names: Vec<String> = all.iter().map(|p| p.name.clone()).collect();
    match all.into_iter().find(|p| p.name == spec) {
        Some(p) => Ok(vec![p]),
        None => bail!(
            "--gpu-profile `{}` is neither a profiles file nor a bundled profile ({}); make one with `prewarm profile from-vllm`",
            prewarm_core::shorten(spec, 80),
            names.join(", ")
        ),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// Derive a profile's token rates from `vllm bench serve --save-result` files (run at
    /// saturation: --request-rate inf); two or more runs with different prompt and output
    /// lengths are fitted together. Prints the profile; --out adds it to a profiles file.
    FromVllm {
        /// Result files written by `vllm bench serve --save-result`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The profile's name (letters, digits, '.', '_', '-').
        #[arg(long)]
        name: String,
        /// Price of one GPU-hour (or one replica-hour) in US dollars.
        #[arg(long)]
        price: Option<f64>,
        /// The GPU type, for people.
        #[arg(long, default_value = "")]
        gpu_type: String,
        /// The model served (default: the result's model_id).
        #[arg(long)]
        model: Option<String>,
        /// A profiles file to add the profile to (replacing one of the same name).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List profiles: the database's, or a file's (--file), or the bundled ones (--bundled).
    List {
        /// A profiles file to list instead of the database's.
        #[arg(long, conflicts_with = "bundled")]
        file: Option<PathBuf>,
        /// List the profiles compiled into prewarm.
        #[arg(long)]
        bundled: bool,
        /// PostgreSQL connection URL, for the database's profiles.
        #[arg(long, env = "PREWARM_DATABASE__URL")]
        database_url: Option<String>,
    },
    /// Store a profiles file's profiles in the database (replacing those of the same names;
    /// fleets that name one plan with its new rates from their next tick).
    Import {
        /// The profiles file.
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a profile no fleet uses.
    Delete {
        /// The profile's name.
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Reads one `vllm bench serve` result file; errors name the file.
fn read_run(path: &Path) -> anyhow::Result<(BenchRun, Option<String>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not JSON ({e})", path.display()))?;
    ensure!(
        json.is_object(),
        "{}: a `vllm bench serve --save-result` file is one JSON object",
        path.display()
    );
    let run = BenchRun::read(&json).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let model = json
        .get("model_id")
        .and_then(|m| m.as_str())
        .map(|m| prewarm_core::shorten(m, 200));
    Ok((run, model))
}

fn print_table(profiles: &[GpuProfile]) {
    println!(
        "{:<28} {:>12} {:>11} {:>9}  {:<22} model",
        "profile", "prefill t/s", "decode t/s", "$/GPU-h", "GPU"
    );
    for p in profiles {
        println!(
            "{:<28} {:>12.0} {:>11.0} {:>9}  {:<22} {}",
            p.name,
            p.prefill_tps,
            p.decode_tps,
            p.price_usd_per_gpu_hour
                .map_or("-".to_string(), |x| format!("{x:.2}")),
            p.gpu_type,
            p.model
        );
    }
}

pub(crate) fn run(command: &ProfileCommand) -> anyhow::Result<()> {
    match command {
        ProfileCommand::FromVllm {
            files,
            name,
            price,
            gpu_type,
            model,
            out,
        } => {
            let mut runs = Vec::new();
            let mut seen_model = None;
            for f in files {
                let (run, m) = read_run(f)?;
                runs.push(run);
                seen_model = seen_model.or(m);
            }
            let rates = from_vllm_bench(&runs).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e}",
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let profile = GpuProfile {
                name: name.clone(),
                prefill_tps: (rates.prefill_tps * 10.0).round() / 10.0,
                decode_tps: (rates.decode_tps * 10.0).round() / 10.0,
                price_usd_per_gpu_hour: *price,
                gpu_type: gpu_type.clone(),
                model: model.clone().or(seen_model).unwrap_or_default(),
                source: prewarm_core::shorten(
                    &format!(
                        "vllm bench serve: {}",
                        files
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    400,
                ),
            };
            profile.check().map_err(anyhow::Error::msg)?;
            let one = ProfileFile {
                profiles: vec![profile.clone()],
            };
            print!("{}", toml::to_string(&one)?);
            if let Some(path) = out {
                let mut file = if path.exists() {
                    ProfileFile {
                        profiles: read_file(path)?,
                    }
                } else {
                    ProfileFile::default()
                };
                file.profiles.retain(|p| p.name != profile.name);
                file.profiles.push(profile);
                crate::output::write_atomic(path, toml::to_string(&file)?.as_bytes())?;
                eprintln!(
                    "wrote {} profile(s) to {}",
                    file.profiles.len(),
                    path.display()
                );
            }
        }
        ProfileCommand::List {
            file,
            bundled,
            database_url,
        } => {
            let profiles = match (file, bundled, database_url) {
                (Some(f), _, _) => read_file(f)?,
                (None, true, _) => self::bundled(),
                (None, false, Some(url)) => runtime()?.block_on(async {
                    let pool = connect(&DbArgs {
                        database_url: url.clone(),
                    })
                    .await?;
                    Ok::<_, anyhow::Error>(prewarm_store::profiles::list(&pool).await?)
                })?,
                (None, false, None) => bail!(
                    "list the database's profiles with DATABASE_URL (or --database-url), a file's with --file, or the bundled ones with --bundled"
                ),
            };
            print_table(&profiles);
        }
        ProfileCommand::Import { file, db } => {
            let profiles = read_file(file)?;
            runtime()?.block_on(async {
                let pool = connect(db).await?;
                let created =
                    prewarm_store::profiles::upsert(&pool, &profiles, &Actor::cli()).await?;
                println!(
                    "stored {} profile(s) from {} ({created} new, {} replaced)",
                    profiles.len(),
                    file.display(),
                    profiles.len() - created
                );
                Ok::<_, anyhow::Error>(())
            })?;
        }
        ProfileCommand::Delete { name, db } => runtime()?.block_on(async {
            let pool = connect(db).await?;
            if prewarm_store::profiles::delete(&pool, name, &Actor::cli()).await? {
                println!("deleted profile `{name}`");
            } else {
                bail!("no profile named `{}`", prewarm_core::shorten(name, 80));
            }
            Ok::<_, anyhow::Error>(())
        })?,
    }
    Ok(())
}
