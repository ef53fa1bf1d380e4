//! The container images the tests use.
//!
//! There is no image registry on our machines, so `scripts/docker-images.sh`
//! builds them locally (Debian base from debootstrap) and tags them with a
//! recipe version. `testcontainers` finds a local image without pulling.
//! On a machine that can pull, point the tests at other images that honour
//! the same environment variables (see `docker/*/entrypoint.sh`) with
//! `SLUICE_KAFKA_IMAGE=name:tag` and `SLUICE_MARIADB_IMAGE=name:tag`.

/// The Kafka image as `(name, tag)`: `SLUICE_KAFKA_IMAGE` or the locally built one.
pub fn kafka_image() -> (String, String) {
    image_from_env("SLUICE_KAFKA_IMAGE", "sluice/kafka:4.4.0-r1")
}

/// Whether the Kafka image's line has the `transaction.version` feature
/// (KIP-890, Kafka 4): `false` for a 3.x tag, which tests about transaction
/// versions then skip, saying so.
pub fn kafka_has_transaction_versions() -> bool {
    !kafka_image().1.starts_with("3.")
}

/// The MariaDB image as `(name, tag)`: `SLUICE_MARIADB_IMAGE` or the locally built one.
pub fn mariadb_image() -> (String, String) {
    image_from_env("SLUICE_MARIADB_IMAGE", "sluice/mariadb:10.11-r1")
}

fn image_from_env(var: &str, default: &str) -> (String, String) {
    let full = std::env::var(var).unwrap_or_else(|_| default.to_string());
    match full.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (full, "latest".to_string()),
    }
}
