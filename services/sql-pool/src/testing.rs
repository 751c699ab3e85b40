//! Fresh, uniquely named databases for tests, so tests run in parallel and
//! leave nothing behind. MariaDB comes from `TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`), SQLite files go to the temp directory.

use rand::Rng;
use url::Url;

use crate::Backend;

/// The MariaDB/MySQL server tests use.
pub fn mysql_server_url() -> Url {
    let raw = std::env::var("TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    Url::parse(&raw).unwrap_or_else(|error| panic!("TEST_MYSQL_URL={raw:?} is not a URL: {error}"))
}

/// A database that exists for one test: dropped (MySQL) or deleted (SQLite) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: Url,
    pub backend: Backend,
}

impl TestDatabase {
    /// A new, empty database of this backend; `prefix` names the test suite.
    pub fn new(backend: Backend, prefix: &str) -> Self {
        let name = format!("{prefix}_test_{:016x}", rand::rng().random::<u64>());
        let url = match backend {
            Backend::MySql => {
                let mut url = mysql_server_url();
                url.set_path(&name);
                url
            }
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Url::parse(&format!("sqlite://{}", path.display())).expect("a temp path is a valid URL")
            }
        };
        Self { url, backend }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self.backend {
            Backend::Sqlite => {
                let path = self.url.path().to_owned();
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
            Backend::MySql => {
                let url = self.url.clone();
                // Drop runs inside the test's runtime: clean up on a thread with its own.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                    runtime.block_on(crate::drop_mysql_database(&url)).ok()
                })
                .join();
            }
        }
    }
}

/// Runs an async test body `fn name(backend: Backend)` once on MariaDB and once on SQLite.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn on_mariadb() {
                super::$name(sql_pool::Backend::MySql).await;
            }

            #[tokio::test]
            async fn on_sqlite() {
                super::$name(sql_pool::Backend::Sqlite).await;
            }
        }
    };
}
