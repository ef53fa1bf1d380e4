//! Secrets kept out of what Sluice shows (REST views, logs, `Debug`): key
//! names that say a value is secret, as Flink's `GlobalConfiguration`
//! recognises them, job arguments after such an option, and passwords in
//! URLs.

/// What a masked value reads.
pub const MASK: &str = "******";

/// Parts of key names whose values are secrets (as in Flink's
/// `GlobalConfiguration.SENSITIVE_KEYS`).
const SENSITIVE: &[&str] = &[
    "password",
    "secret",
    "token",
    "apikey",
    "api-key",
    "auth-params",
    "service-key",
    "basic-auth",
    "jaas.config",
    "http-headers",
];

/// Whether the value of `key` is a secret.
pub fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|s| key.contains(s))
}

/// `value` with the password of a URL in it (`scheme://user:pass@host...`)
/// masked; anything else unchanged.
pub fn redact_url(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else { return value.to_string() };
    let rest = &value[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return value.to_string() };
    let Some(colon) = rest[..at].find(':') else { return value.to_string() };
    format!("{}{}{MASK}{}", &value[..scheme_end + 3], &rest[..=colon], &rest[at..])
}

/// Job arguments with secrets masked: the value after an option whose name
/// is sensitive (`--password X`, `--api-key=X`) and URL passwords.
pub fn mask_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for arg in args {
        if mask_next {
            out.push(MASK.to_string());
            mask_next = false;
            continue;
        }
        let option = arg.trim_start_matches('-');
        if arg.starts_with('-') && is_sensitive(option) {
            match option.split_once('=') {
                Some((name, _)) => out.push(format!("{}{name}={MASK}", &arg[..arg.len() - option.len()])),
                None => {
                    out.push(arg.clone());
                    mask_next = true;
                }
            }
            continue;
        }
        out.push(redact_url(arg));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn secrets_in_keys_arguments_and_urls_are_masked() {
        assert!(is_sensitive("rest.token") && is_sensitive("sasl.PASSWORD") && is_sensitive("db.secret-key"));
        assert!(!is_sensitive("security.ssl.internal.key") && !is_sensitive("parallelism.default"));
        assert_eq!(redact_url("mysql://u:secret@h:3306/db"), "mysql://u:******@h:3306/db");
        assert_eq!(redact_url("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(redact_url("https://host/path@v1"), "https://host/path@v1");
        let args = s(&[
            "--mysql-url",
            "mysql://cdc:hunter2@db:3306/shop",
            "--password",
            "hunter2",
            "--api-key=abc",
            "--tables",
            "orders",
        ]);
        let masked = mask_args(&args);
        assert_eq!(
            masked,
            s(&[
                "--mysql-url",
                "mysql://cdc:******@db:3306/shop",
                "--password",
                MASK,
                "--api-key=******",
                "--tables",
                "orders"
            ])
        );
    }
}
