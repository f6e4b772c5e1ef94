// Rebuild when a migration is added or changed: `sqlx::migrate!` embeds the folder at compile time.
//! Rebuilds the crate when a migration changes.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
