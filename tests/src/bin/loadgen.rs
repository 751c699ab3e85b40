//! Load generator for the chat service. Every scenario is bounded in time and
//! count, talks only to the gateways given (loopback), and prints one result
//! block (also as a JSON line, for BENCHMARKS.md).
//!
//!   loadgen login   --base URL [--clients 16] [--seconds 10]
//!   loadgen send    --base URL [--base2 URL] [--clients 64] [--seconds 10] [--server-pids PID,PID...]
//!                   (with --base2, clients alternate between the two gateways; server CPU is
//!                   charged to --server-pids, else to whoever listens on --base's port)
//!   loadgen history --base URL [--clients 32] [--seconds 10]
//!   loadgen idle    --base URL [--sockets 5000] --gateway-pid PID [--hold 5] [--user-sockets 1 --chats 20]
//!                   (with --user-sockets 1: user sockets of two users who share --chats chats)
//!   loadgen fanout  --base URL --base2 URL [--members 100] [--rate 200] [--seconds 10] [--user-sockets 1]
//!                   (with --user-sockets 1 every member listens on a user socket, GET /ws)
//!   loadgen users   --base URL --base2 URL [--users 2000] [--chats-per-user 20] [--members 10]
//!                   [--rate 200] [--seconds 10] [--hold 5] [--gateway-pids PID,PID]
//!                   (user sockets, half on each gateway; RSS per idle socket from --gateway-pids)
//!   loadgen resume  --base URL --base2 URL [--clients 20] [--messages 300] [--rate 100]

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use chat_tests::ws::{ChatSocket, Closed};
use serde_json::{Value, json};

struct Args {
    scenario: String,
    options: HashMap<String, String>,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut raw = std::env::args().skip(1);
        let scenario =
            raw.next().context("usage: loadgen <login|send|history|idle|fanout|users|resume> --base URL ...")?;
        let mut options = HashMap::new();
        while let Some(key) = raw.next() {
            let key = key.strip_prefix("--").with_context(|| format!("expected --option, got {key}"))?.to_owned();
            let value = raw.next().with_context(|| format!("--{key} needs a value"))?;
            options.insert(key, value);
        }
        Ok(Self { scenario, options })
    }

    fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> anyhow::Result<T> {
        match self.options.get(key) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| anyhow::anyhow!("--{key} {value}: not a valid value")),
        }
    }

    fn url(&self, key: &str) -> anyhow::Result<String> {
        let url = self.options.get(key).cloned().with_context(|| format!("--{key} URL is required"))?;
        let host = url.trim_start_matches("http://").split([':', '/']).next().unwrap_or_default().to_owned();
        // Load goes to this machine only.
        if !(host == "localhost" || host.starts_with("127.") || host == "[::1]") {
            bail!("--{key} {url}: only loopback addresses are allowed");
        }
        Ok(url.trim_end_matches('/').to_owned())
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// p50, p99, p99.9 and max of latencies in microseconds, as milliseconds.
fn percentiles(mut latencies: Vec<u64>) -> Value {
    if latencies.is_empty() {
        return json!(null);
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1] as f64 / 1000.0
    };
    json!({"p50_ms": at(0.50), "p99_ms": at(0.99), "p999_ms": at(0.999), "max_ms": at(1.0), "samples": latencies.len()})
}

fn report(scenario: &str, result: Value) {
    println!("{scenario}: {}", serde_json::to_string_pretty(&result).unwrap_or_default());
    println!("RESULT {}", json!({"scenario": scenario, "result": result}));
}

struct User {
    id: i64,
    token: String,
}

async fn register(http: &reqwest::Client, base: &str, tag: String) -> anyhow::Result<(User, String, String)> {
    let n = now_us();
    let username = format!("lg{tag}{n:x}").chars().take(32).collect::<String>();
    let password = "loadgen-password-1".to_owned();
    let body = json!({"username": username, "email": format!("{username}@example.com"), "password": password});
    let user: Value =
        http.post(format!("{base}/api/v1/users/register")).json(&body).send().await?.error_for_status()?.json().await?;
    let login = json!({"username": username, "password": password});
    let token: Value =
        http.post(format!("{base}/api/v1/users/login")).json(&login).send().await?.error_for_status()?.json().await?;
    let user = User {
        id: user["id"].as_i64().context("an id")?,
        token: token["access_token"].as_str().context("a token")?.to_owned(),
    };
    Ok((user, username, password))
}

async fn users(http: &reqwest::Client, base: &str, count: usize) -> anyhow::Result<Vec<User>> {
    let mut made = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(8) {
        let batch = futures::future::join_all(chunk.iter().map(|n| register(http, base, n.to_string()))).await;
        for result in batch {
            made.push(result?.0);
        }
    }
    Ok(made)
}

async fn group(http: &reqwest::Client, base: &str, owner: &User, members: &[&User]) -> anyhow::Result<i64> {
    let ids: Vec<i64> = members.iter().map(|member| member.id).collect();
    let body = json!({"chat_type": "group", "name": "load", "participant_ids": ids});
    let chat: Value = http
        .post(format!("{base}/api/v1/chats/"))
        .bearer_auth(&owner.token)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    chat["id"].as_i64().context("a chat id")
}

/// Runs `clients` loops of `request` for `seconds`; requests/s and latency percentiles.
async fn closed_loop<F, Fut>(clients: usize, seconds: u64, request: F) -> Value
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let loops = (0..clients).map(|client| {
        let (request, errors) = (request.clone(), errors.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                if request(client).await {
                    latencies.push(start.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        })
    });
    let latencies: Vec<u64> = futures::future::join_all(loops).await.into_iter().flatten().flatten().collect();
    let elapsed = started.elapsed().as_secs_f64();
    json!({
        "clients": clients,
        "seconds": elapsed,
        "requests": latencies.len(),
        "errors": errors.load(Ordering::Relaxed),
        "requests_per_s": latencies.len() as f64 / elapsed,
        "latency": percentiles(latencies),
    })
}

async fn login(args: &Args) -> anyhow::Result<()> {
    let base = args.url("base")?;
    let http = reqwest::Client::new();
    let (_, username, password) = register(&http, &base, "login".into()).await?;
    let (clients, seconds) = (args.get("clients", 16)?, args.get("seconds", 10)?);
    let result = closed_loop(clients, seconds, move |_| {
        let (http, base, body) = (http.clone(), base.clone(), json!({"username": username, "password": password}));
        async move {
            http.post(format!("{base}/api/v1/users/login")).json(&body).send().await.is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    report("login", result);
    Ok(())
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid}"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').context("a stat line")?.1.split_whitespace().collect();
    let ticks: f64 =
        fields.get(11).context("utime")?.parse::<f64>()? + fields.get(12).context("stime")?.parse::<f64>()?;
    // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ) on every architecture it runs on here.
    Ok(ticks / 100.0)
}

/// The processes that listen on this TCP port (from /proc: the socket's inode, then who holds it).
fn listening_on(port: u16) -> Vec<u32> {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) && fields.get(3) == Some(&"0A") {
                inodes.extend(fields.get(9).map(|inode| format!("socket:[{inode}]")));
            }
        }
    }
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let holds = std::fs::read_dir(entry.path().join("fd")).into_iter().flatten().flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| inodes.contains(&target.to_string_lossy().into_owned()))
        });
        if holds {
            pids.push(pid);
        }
    }
    pids
}

/// The server processes to charge CPU to: `--server-pids`, else whoever listens on the base URL's port.
fn server_pids(args: &Args, base: &str) -> anyhow::Result<Vec<u32>> {
    if let Some(list) = args.options.get("server-pids") {
        return list
            .split(',')
            .map(|pid| pid.trim().parse().with_context(|| format!("--server-pids {list}")))
            .collect();
    }
    let port: u16 =
        base.rsplit(':').next().and_then(|port| port.trim_end_matches('/').parse().ok()).context("a port in --base")?;
    Ok(listening_on(port))
}

/// Total CPU seconds of these processes so far (a process that is gone counts nothing).
fn total_cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|pid| cpu_seconds(*pid).ok()).sum()
}

async fn send(args: &Args) -> anyhow::Result<()> {
    let base = args.url("base")?;
    let bases: Arc<Vec<String>> = Arc::new(if args.options.contains_key("base2") {
        vec![base.clone(), args.url("base2")?]
    } else {
        vec![base.clone()]
    });
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let (clients, seconds): (usize, u64) = (args.get("clients", 64)?, args.get("seconds", 10)?);
    let people = users(&http, &base, 8).await?;
    let others: Vec<&User> = people[1..].iter().collect();
    let chat_id = group(&http, &base, &people[0], &others).await?;
    let tokens: Arc<Vec<String>> = Arc::new(people.iter().map(|u| u.token.clone()).collect());
    let pids = server_pids(args, &base)?;
    let (server_before, own_before) = (total_cpu(&pids), cpu_seconds(std::process::id())?);
    let mut result = closed_loop(clients, seconds, move |client| {
        let (http, base, tokens) = (http.clone(), bases[client % bases.len()].clone(), tokens.clone());
        async move {
            let body = json!({"chat_id": chat_id, "content": format!("load {client} {}", now_us())});
            let response = http
                .post(format!("{base}/api/v1/messages/"))
                .bearer_auth(&tokens[client % tokens.len()])
                .json(&body)
                .send()
                .await;
            response.is_ok_and(|r| r.status() == 201)
        }
    })
    .await;
    let (server_cpu, own_cpu) = (total_cpu(&pids) - server_before, cpu_seconds(std::process::id())? - own_before);
    let sends = result["requests"].as_f64().unwrap_or_default().max(1.0);
    result["server_pids"] = json!(pids);
    result["server_cpu_s"] = json!(server_cpu);
    result["server_cpu_us_per_send"] = json!((server_cpu * 1e6 / sends).round());
    result["loadgen_cpu_us_per_send"] = json!((own_cpu * 1e6 / sends).round());
    report("send", result);
    Ok(())
}

async fn history(args: &Args) -> anyhow::Result<()> {
    let base = args.url("base")?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let (clients, seconds): (usize, u64) = (args.get("clients", 32)?, args.get("seconds", 10)?);
    let people = users(&http, &base, 2).await?;
    let chat_id = group(&http, &base, &people[0], &[&people[1]]).await?;
    for chunk in (0..500).collect::<Vec<_>>().chunks(50) {
        let sends = chunk.iter().map(|n| {
            let body = json!({"chat_id": chat_id, "content": format!("history {n}")});
            http.post(format!("{base}/api/v1/messages/")).bearer_auth(&people[0].token).json(&body).send()
        });
        for sent in futures::future::join_all(sends).await {
            sent?.error_for_status()?;
        }
    }
    let token = people[1].token.clone();
    let result = closed_loop(clients, seconds, move |client| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            // Pages of 50 at different depths of the 500 messages.
            let url = format!("{base}/api/v1/messages/chat/{chat_id}?limit=50&after={}", (client * 37) % 450);
            http.get(url).bearer_auth(&token).send().await.is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    report("history", result);
    Ok(())
}

/// What a socket reads until `done` and a quiet half second: each
/// `new_message`'s chat, id and send→receive latency (from its `t=` content).
async fn deliveries(mut socket: ChatSocket, done: Arc<AtomicBool>) -> Vec<(i64, i64, u64)> {
    let mut got = Vec::new();
    loop {
        match socket.next_frame(Duration::from_millis(500)).await {
            Ok(frame) if frame["type"] == "new_message" => {
                let content = frame["message"]["content"].as_str().unwrap_or_default();
                let Some(sent) = content.strip_prefix("t=").and_then(|t| t.parse::<u64>().ok()) else { continue };
                let chat = frame["chat_id"].as_i64().unwrap_or_default();
                let id = frame["message"]["id"].as_i64().unwrap_or_default();
                got.push((chat, id, now_us().saturating_sub(sent)));
            }
            Ok(_) => {}
            Err(None) if !done.load(Ordering::Relaxed) => {}
            Err(_) => break,
        }
    }
    got
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("no number")?.parse()?)
}

async fn idle(args: &Args) -> anyhow::Result<()> {
    let base = args.url("base")?;
    let pid: u32 = args.get("gateway-pid", 0)?;
    anyhow::ensure!(pid > 0, "--gateway-pid PID of the gateway (or standalone server) process is required");
    let (count, hold): (usize, u64) = (args.get("sockets", 5000)?, args.get("hold", 5)?);
    let (user_sockets, chats): (bool, usize) = (args.get("user-sockets", 0_u8)? == 1, args.get("chats", 1)?);
    let http = reqwest::Client::new();
    let people = users(&http, &base, 2).await?;
    let mut chat_ids = Vec::with_capacity(chats.max(1));
    for _ in 0..chats.max(1) {
        chat_ids.push(group(&http, &base, &people[0], &[&people[1]]).await?);
    }
    let chat_id = chat_ids[0];
    // Warm the chats' rooms so that the measurement is the sockets alone.
    let warm = if user_sockets {
        ChatSocket::connect_user_ready(&base, &people[0].token, None).await?
    } else {
        ChatSocket::connect_ready(&base, chat_id, &people[0].token, None).await?
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let mut sockets = Vec::with_capacity(count);
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(200) {
        let opened = futures::future::join_all(chunk.iter().map(|n| {
            let token = &people[n % 2].token;
            let base = &base;
            async move {
                if user_sockets {
                    ChatSocket::connect_user(base, token, None).await
                } else {
                    ChatSocket::connect(base, chat_id, token, None).await
                }
            }
        }))
        .await;
        for socket in opened {
            sockets.push(socket?);
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after = rss_kib(pid)?;
    let stats: Value =
        http.get(format!("{base}/api/v1/ws/stats")).bearer_auth(&people[0].token).send().await?.json().await?;
    report(
        "idle",
        json!({
            "kind": if user_sockets { "user" } else { "per-chat" },
            "chats_each": if user_sockets { chat_ids.len() } else { 1 },
            "sockets": sockets.len(),
            "connect_seconds": connect_s,
            "gateway_rss_before_kib": before,
            "gateway_rss_after_kib": after,
            "rss_per_socket_bytes": (after.saturating_sub(before) * 1024) as f64 / sockets.len() as f64,
            "server_counted_connections": stats["connections"],
        }),
    );
    drop(sockets);
    drop(warm);
    Ok(())
}

async fn fanout(args: &Args) -> anyhow::Result<()> {
    let (base, base2) = (args.url("base")?, args.url("base2")?);
    let (members, rate, seconds): (usize, u64, u64) =
        (args.get("members", 100)?, args.get("rate", 200)?, args.get("seconds", 10)?);
    let user_sockets = args.get("user-sockets", 0_u8)? == 1;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let people = users(&http, &base, members).await?;
    let others: Vec<&User> = people[1..].iter().collect();
    let chat_id = group(&http, &base, &people[0], &others).await?;
    // Half the members on each replica.
    let mut sockets = Vec::new();
    for (n, person) in people.iter().enumerate() {
        let gateway = if n % 2 == 0 { &base } else { &base2 };
        sockets.push(if user_sockets {
            ChatSocket::connect_user_ready(gateway, &person.token, None).await?
        } else {
            ChatSocket::connect_ready(gateway, chat_id, &person.token, None).await?
        });
    }
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = sockets.into_iter().map(|socket| tokio::spawn(deliveries(socket, done.clone()))).collect();
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0_u64;
    let mut inflight = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        let (http, url, token) = (http.clone(), format!("{base}/api/v1/messages/"), people[0].token.clone());
        inflight.push(tokio::spawn(async move {
            let body = json!({"chat_id": chat_id, "content": format!("t={}", now_us())});
            http.post(url).bearer_auth(token).json(&body).send().await.is_ok_and(|r| r.status() == 201)
        }));
        sent += 1;
    }
    let accepted = futures::future::join_all(inflight).await.into_iter().filter(|ok| matches!(ok, Ok(true))).count();
    let send_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    done.store(true, Ordering::Relaxed);
    let latencies: Vec<u64> = futures::future::join_all(readers)
        .await
        .into_iter()
        .flatten()
        .flatten()
        .map(|(_, _, latency)| latency)
        .collect();
    let expected = accepted * members;
    report(
        "fanout",
        json!({
            "sockets": if user_sockets { "user" } else { "per-chat" },
            "members": members,
            "replicas": 2,
            "target_rate_per_s": rate,
            "messages_sent": sent,
            "messages_stored": accepted,
            "deliveries": latencies.len(),
            "deliveries_expected": expected,
            "deliveries_per_s": latencies.len() as f64 / send_seconds,
            "latency_send_to_receive": percentiles(latencies),
        }),
    );
    Ok(())
}

async fn resume(args: &Args) -> anyhow::Result<()> {
    let (base, base2) = (args.url("base")?, args.url("base2")?);
    let (clients, total, rate): (usize, usize, u64) =
        (args.get("clients", 20)?, args.get("messages", 300)?, args.get("rate", 100)?);
    let http = reqwest::Client::new();
    let people = users(&http, &base, clients + 1).await?;
    let others: Vec<&User> = people[1..].iter().collect();
    let chat_id = group(&http, &base, &people[0], &others).await?;
    let readers: Vec<_> = people[1..]
        .iter()
        .enumerate()
        .map(|(n, person)| {
            let (token, gateways) = (person.token.clone(), [base.clone(), base2.clone()]);
            tokio::spawn(async move {
                let mut seqs: Vec<i64> = Vec::new();
                let mut last_id = 0;
                let mut reconnects = 0_u32;
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut socket = ChatSocket::connect_ready(&gateways[n % 2], chat_id, &token, Some(0)).await?;
                while seqs.len() < total && Instant::now() < deadline {
                    match socket.expect("new_message", Duration::from_secs(5)).await {
                        Ok(frame) => {
                            last_id = frame["message"]["id"].as_i64().unwrap_or(last_id);
                            seqs.push(frame["message"]["seq"].as_i64().unwrap_or(0));
                            // Drop the connection now and then, mid-stream, and resume on either replica.
                            if seqs.len().is_multiple_of(17 + n) {
                                socket.close().await;
                                reconnects += 1;
                                let gateway = &gateways[(n + reconnects as usize) % 2];
                                socket = ChatSocket::connect_ready(gateway, chat_id, &token, Some(last_id)).await?;
                            }
                        }
                        Err(Some(Closed::Code(_) | Closed::Dropped)) => {
                            reconnects += 1;
                            socket = ChatSocket::connect_ready(&gateways[0], chat_id, &token, Some(last_id)).await?;
                        }
                        Err(None) => break,
                    }
                }
                anyhow::Ok((seqs, reconnects))
            })
        })
        .collect();
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    for n in 0..total {
        let body = json!({"chat_id": chat_id, "content": format!("resume {n}")});
        http.post(format!("{base}/api/v1/messages/"))
            .bearer_auth(&people[0].token)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        tokio::time::sleep(interval).await;
    }
    let mut exact = 0;
    let mut reconnects = 0;
    for reader in futures::future::join_all(readers).await {
        let (seqs, count) = reader??;
        reconnects += count;
        if seqs == (1..=total as i64).collect::<Vec<_>>() {
            exact += 1;
        }
    }
    report(
        "resume",
        json!({"clients": clients, "messages": total, "reconnects": reconnects, "clients_exactly_once_in_order": exact}),
    );
    anyhow::ensure!(exact == clients, "{} of {clients} clients saw every message exactly once", exact);
    Ok(())
}

/// Which users are in which chat: `rounds` times, the users in a different
/// order (a stride through them), cut into chats of `members` — so every user
/// is in `rounds` chats, each chat with others. Indexes into the users.
fn chat_layout(users: usize, rounds: usize, members: usize) -> Vec<Vec<usize>> {
    let mut chats = Vec::new();
    for round in 0..rounds {
        // A stride coprime with the count visits every user once per round.
        let stride = (1..users).map(|k| 1 + round * 7 + k).find(|s| gcd(*s, users) == 1).unwrap_or(1);
        let order: Vec<usize> = (0..users).map(|n| (n * stride + round) % users).collect();
        chats.extend(order.chunks(members).filter(|chunk| chunk.len() > 1).map(<[usize]>::to_vec));
    }
    chats
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn gateway_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|pid| rss_kib(*pid).ok()).sum()
}

/// N user sockets, each user in M chats, over two gateways: connect rate, RSS
/// per idle user socket, then messages at a fixed rate into random chats —
/// deliveries/s, send→receive latency, and every delivery exactly once.
async fn users_scenario(args: &Args) -> anyhow::Result<()> {
    let (base, base2) = (args.url("base")?, args.url("base2")?);
    let (count, rounds, members): (usize, usize, usize) =
        (args.get("users", 2000)?, args.get("chats-per-user", 20)?, args.get("members", 10)?);
    let (rate, seconds, hold): (u64, u64, u64) =
        (args.get("rate", 200)?, args.get("seconds", 10)?, args.get("hold", 5)?);
    let pids: Vec<u32> = match args.options.get("gateway-pids") {
        Some(list) => list.split(',').map(|pid| pid.trim().parse()).collect::<Result<_, _>>()?,
        None => {
            let mut pids = server_pids(args, &base)?;
            pids.extend(server_pids(args, &base2)?);
            pids.sort_unstable();
            pids.dedup();
            pids
        }
    };
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let started = Instant::now();
    let people = users(&http, &base, count).await?;
    let layout = chat_layout(count, rounds, members);
    let mut chats: Vec<(i64, Vec<usize>)> = Vec::with_capacity(layout.len());
    for batch in layout.chunks(16) {
        let made = futures::future::join_all(batch.iter().map(|members| {
            let others: Vec<&User> = members[1..].iter().map(|n| &people[*n]).collect();
            let http = &http;
            let base = &base;
            let owner = &people[members[0]];
            async move { group(http, base, owner, &others).await }
        }))
        .await;
        for (chat_id, members) in made.into_iter().zip(batch) {
            chats.push((chat_id?, members.clone()));
        }
    }
    let setup_s = started.elapsed().as_secs_f64();

    let rss_before = gateway_rss_kib(&pids);
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(count);
    for chunk in people.iter().enumerate().collect::<Vec<_>>().chunks(100) {
        let opened = futures::future::join_all(chunk.iter().map(|(n, person)| {
            let gateway = if n % 2 == 0 { &base } else { &base2 };
            ChatSocket::connect_user_ready(gateway, &person.token, None)
        }))
        .await;
        for socket in opened {
            sockets.push(socket?);
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let rss_idle = gateway_rss_kib(&pids);

    // Every socket reads: each new_message's (chat, id) and its latency.
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = sockets.into_iter().map(|socket| tokio::spawn(deliveries(socket, done.clone()))).collect();
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let chats = Arc::new(chats);
    let people = Arc::new(people);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut inflight = Vec::new();
    let mut n: u64 = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        n += 1;
        // A random chat (a multiplicative hash of the count), and one of its members, through either gateway.
        let pick = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
        let (chats, people, http) = (chats.clone(), people.clone(), http.clone());
        let gateway = if n.is_multiple_of(2) { base.clone() } else { base2.clone() };
        inflight.push(tokio::spawn(async move {
            let (chat_id, members) = &chats[(pick % chats.len() as u64) as usize];
            let sender = &people[members[(pick as usize / 7) % members.len()]];
            let body = json!({"chat_id": chat_id, "content": format!("t={}", now_us())});
            let url = format!("{gateway}/api/v1/messages/");
            let response = http.post(url).bearer_auth(&sender.token).json(&body).send().await;
            match response {
                Ok(response) if response.status() == 201 => {
                    let message: Value = response.json().await.unwrap_or_default();
                    Some((*chat_id, message["id"].as_i64().unwrap_or_default(), members.len()))
                }
                _ => None,
            }
        }));
    }
    let stored: Vec<(i64, i64, usize)> =
        futures::future::join_all(inflight).await.into_iter().filter_map(|sent| sent.ok().flatten()).collect();
    let send_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    done.store(true, Ordering::Relaxed);
    let received: Vec<Vec<(i64, i64, u64)>> =
        futures::future::join_all(readers).await.into_iter().collect::<Result<_, _>>()?;
    // Exactly once: per socket, no (chat, id) twice; in all, every stored message once per member.
    let mut duplicates = 0;
    let mut deliveries: HashMap<(i64, i64), usize> = HashMap::new();
    for socket in &received {
        let mut seen = std::collections::HashSet::new();
        for (chat, id, _) in socket {
            if !seen.insert((*chat, *id)) {
                duplicates += 1;
            }
            *deliveries.entry((*chat, *id)).or_default() += 1;
        }
    }
    let complete = stored.iter().filter(|(chat, id, members)| deliveries.get(&(*chat, *id)) == Some(members)).count();
    let latencies: Vec<u64> = received.iter().flatten().map(|(_, _, latency)| *latency).collect();
    let expected: usize = stored.iter().map(|(_, _, members)| members).sum();
    report(
        "users",
        json!({
            "users": count,
            "chats": chats.len(),
            "chats_per_user": rounds,
            "members_per_chat": members,
            "replicas": 2,
            "setup_seconds": setup_s,
            "connect_seconds": connect_s,
            "connects_per_s": count as f64 / connect_s,
            "gateway_rss_before_kib": rss_before,
            "gateway_rss_idle_kib": rss_idle,
            "rss_per_idle_user_socket_bytes": (rss_idle.saturating_sub(rss_before) * 1024) as f64 / count as f64,
            "target_rate_per_s": rate,
            "messages_stored": stored.len(),
            "deliveries": latencies.len(),
            "deliveries_expected": expected,
            "messages_delivered_to_every_member_once": complete,
            "duplicates": duplicates,
            "deliveries_per_s": latencies.len() as f64 / send_seconds,
            "latency_send_to_receive": percentiles(latencies),
        }),
    );
    anyhow::ensure!(duplicates == 0, "{duplicates} deliveries came twice");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    match args.scenario.as_str() {
        "login" => login(&args).await,
        "send" => send(&args).await,
        "history" => history(&args).await,
        "idle" => idle(&args).await,
        "fanout" => fanout(&args).await,
        "resume" => resume(&args).await,
        "users" => users_scenario(&args).await,
        other => bail!("unknown scenario {other:?}: login, send, history, idle, fanout, users or resume"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_is_in_as_many_chats_as_rounds_and_no_chat_lists_anyone_twice() {
        for (users, rounds, members) in [(2000, 20, 10), (100, 3, 7), (10, 2, 10)] {
            let chats = chat_layout(users, rounds, members);
            let mut per_user = vec![0; users];
            for chat in &chats {
                let distinct: std::collections::HashSet<&usize> = chat.iter().collect();
                assert_eq!(distinct.len(), chat.len());
                assert!(chat.len() <= members);
                for user in chat {
                    per_user[*user] += 1;
                }
            }
            // A user left alone at the end of a round is in no chat of that round.
            assert!(per_user.iter().all(|n| *n <= rounds && *n + 1 >= rounds), "{users} {rounds} {members}");
            if users % members == 0 {
                assert!(per_user.iter().all(|n| *n == rounds));
            }
        }
    }
}
