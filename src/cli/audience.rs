//! `union360 audience`: the audience statistics as a table on the terminal.

use anyhow::Context;
use clap::Args;

use crate::domain::{AppId, Day};
use crate::settings::DatabaseSettings;
use crate::stats::{self, Audience};
use crate::store;

/// `union360 audience …`
#[derive(Debug, Args)]
pub struct AudienceCommand {
    /// Database and key settings.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// An official account to count (an appid; repeat for several; all when omitted).
    #[arg(long = "app")]
    pub apps: Vec<String>,
    /// Count as of the end of this day (`YYYY-MM-DD`, China Standard Time).
    #[arg(long)]
    pub day: Option<String>,
}

/// Runs `union360 audience`.
pub(super) async fn run(command: AudienceCommand) -> anyhow::Result<()> {
    let database = &command.database;
    let store = store::connect(&database.database_url).await?;
    store::migrate(&store.db).await?;
    let appids = command
        .apps
        .iter()
        .map(|a| AppId::parse(a.as_str()).with_context(|| format!("--app {a}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let day = command
        .day
        .as_deref()
        .map(Day::parse)
        .transpose()
        .context("--day")?;
    let appids = (!appids.is_empty()).then_some(appids);
    let audience = stats::audience(&store.db, appids.as_deref(), day).await?;
    store::close(&store.db).await?;
    print!("{}", render(&audience));
    Ok(())
}

/// The audience as text tables.
pub fn render(a: &Audience) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let when = a
        .day
        .map_or("now".to_owned(), |d| format!("at the end of {d} (UTC+8)"));
    let (low, high) = a.distinct_people();
    let _ = writeln!(
        out,
        "Audience of {} official accounts, {when}",
        a.apps.len()
    );
    if low == high {
        let _ = writeln!(out, "Distinct people: {low}");
    } else {
        let _ = writeln!(
            out,
            "Distinct people: between {low} and {high} ({} linked by UnionID, plus {} follows whose UnionID is unknown)",
            a.linked_people, a.unlinked_followers
        );
    }
    let _ = writeln!(out);
    let width = a
        .apps
        .iter()
        .map(|f| f.appid.len().max(f.name.chars().count()))
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:<width$}  {:<width$}  {:>10}  {:>10}  {:>10}",
        "app", "name", "followers", "linked", "unlinked"
    );
    for f in &a.apps {
        let _ = writeln!(
            out,
            "{:<width$}  {:<width$}  {:>10}  {:>10}  {:>10}",
            f.appid,
            f.name,
            f.followers(),
            f.linked,
            f.unlinked
        );
    }
    if !a.pairs.is_empty() {
        let _ = writeln!(out, "\nFollowing both (linked people):");
        for (i, j, n) in &a.pairs {
            let _ = writeln!(out, "  {} & {}: {n}", a.apps[*i].appid, a.apps[*j].appid);
        }
    }
    if !a.follow_counts.is_empty() {
        let _ = writeln!(out, "\nFollowing exactly k of them (linked people):");
        for (k, n) in a.follow_counts.iter().enumerate() {
            let _ = writeln!(out, "  {}: {n}", k + 1);
        }
    }
    if !a.combinations.is_empty() {
        let _ = writeln!(
            out,
            "\nCombinations (linked people following exactly these):"
        );
        for (members, n) in a.combinations.iter().take(20) {
            let names: Vec<&str> = members.iter().map(|&i| a.apps[i].appid.as_str()).collect();
            let _ = writeln!(out, "  {:>10}  {}", n, names.join(" + "));
        }
        if a.combinations.len() > 20 {
            let _ = writeln!(out, "  … {} more", a.combinations.len() - 20);
        }
    }
    out
}
