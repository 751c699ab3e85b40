//! The binaries refuse bad configuration with one line that names the variable.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use chat_tests::built_binary;

/// Runs a binary with only these variables; its exit code and standard error.
fn run(binary: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = std::process::Command::new(built_binary(binary))
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the binary runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

const SECRET: (&str, &str) = ("SECRET_KEY", "a-secret-key-of-at-least-32-characters!!");
const INTERNAL: (&str, &str) = ("INTERNAL_TOKEN", "an-internal-credential-of-32-characters-or-more");

#[test]
fn distributed_services_refuse_to_start_without_a_secret_key() {
    for binary in ["auth", "chat-metadata", "message-store", "gateway"] {
        let (code, stderr) = run(binary, &[]);
        assert_eq!(code, Some(2), "{binary}: {stderr}");
        assert!(stderr.contains("SECRET_KEY is required"), "{binary}: {stderr}");
    }
}

#[test]
fn distributed_services_refuse_to_start_without_an_internal_credential() {
    for binary in ["auth", "chat-metadata", "message-store", "gateway"] {
        let (code, stderr) = run(binary, &[SECRET]);
        assert_eq!(code, Some(2), "{binary}: {stderr}");
        assert!(stderr.contains("INTERNAL_TOKEN is required"), "{binary}: {stderr}");
        let (code, stderr) = run(binary, &[SECRET, ("INTERNAL_TOKEN", "short")]);
        assert_eq!(code, Some(2), "{binary}: {stderr}");
        assert!(stderr.contains("INTERNAL_TOKEN") && stderr.contains("at least 32"), "{binary}: {stderr}");
    }
}

#[test]
fn malformed_values_are_refused_naming_the_variable() {
    let cases: [(&str, (&str, &str)); 9] = [
        ("gateway", ("PORT", "eighty")),
        ("gateway", ("AUTH_GRPC_URL", "not a url")),
        ("auth", ("DATABASE_URL", "postgres://somewhere/db")),
        ("auth", ("ACCESS_TOKEN_EXPIRE_MINUTES", "-5")),
        ("chat-metadata", ("MYSQL_PORT", "99999")),
        ("message-store", ("CONTENT_STORE", "floppy")),
        ("message-store", ("METRICS_ADDR", "everywhere:9103")),
        ("gateway", ("MESSAGE_RATE_PER_SECOND", "-1")),
        ("auth", ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")),
    ];
    for (binary, (variable, value)) in cases {
        let (code, stderr) = run(binary, &[SECRET, INTERNAL, (variable, value)]);
        assert_eq!(code, Some(2), "{binary} {variable}={value}: {stderr}");
        let line = stderr.lines().find(|line| line.contains("configuration error")).unwrap_or_default();
        assert!(line.contains(variable), "{binary}: one line names {variable}: {stderr}");
    }
}

#[test]
fn a_short_secret_key_is_refused() {
    let (code, stderr) = run("gateway", &[("SECRET_KEY", "short"), INTERNAL]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("SECRET_KEY") && stderr.contains("at least 32"), "{stderr}");
}
