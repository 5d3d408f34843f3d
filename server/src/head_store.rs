//! Where the head keeps its tables (nodes, functions, KV, the actor
//! directory), so that a head killed and restarted on the same storage
//! finds them again:
//!
//! - none (the default): in memory only; said so at start;
//! - `--storage PATH`: an embedded store, a directory holding an
//!   append-only log of puts and deletes (`tables.log`), compacted when it
//!   grows, and a `LOCK` file that one head holds (`flock`) while it runs;
//! - `--storage redis://HOST:PORT`: one Redis hash per table, and a lock
//!   key with an expiry that the running head keeps renewing.
//!
//! A second head on storage that a live head holds is refused with an
//! error naming the holder. Writes are not fsynced one by one (the log
//! survives the head's process being killed, not the machine losing
//! power between compactions; Redis follows its own persistence settings).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// One stored entry: (table, key) -> value.
pub type Entries = Vec<(String, Vec<u8>, Vec<u8>)>;

/// A place for the head's tables.
pub trait Backend: Send {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<()>;
    fn delete(&mut self, table: &str, key: &[u8]) -> Result<()>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

/// Open `spec` (a directory path or `redis://HOST:PORT`) for the head at
/// `address`: the backend and what it holds.
pub fn open(spec: &str, address: &str) -> Result<(Box<dyn Backend>, Entries)> {
    if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        let (store, entries) = RedisStore::open(spec, address)?;
        Ok((Box::new(store), entries))
    } else {
        let (store, entries) = FileStore::open(Path::new(spec), address)?;
        Ok((Box::new(store), entries))
    }
}

// ---- the embedded store ---------------------------------------------------

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// Compact once the log has this much more than the live entries.
const COMPACT_SLACK_BYTES: u64 = 8 << 20;

/// The embedded store: an append-only log in a locked directory.
pub struct FileStore {
    dir: PathBuf,
    log: File,
    /// Held (flock) while this head runs.
    _lock: File,
    live: HashMap<(String, Vec<u8>), Vec<u8>>,
    live_bytes: u64,
    log_bytes: u64,
}

fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for b in *part {
            h ^= *b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

fn encode(op: u8, table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + table.len() + key.len() + value.len());
    out.push(op);
    for part in [table.as_bytes(), key, value] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    let sum = fnv1a(&[&out]);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// One log record: (op, table, key, value).
type Record = (u8, String, Vec<u8>, Vec<u8>);

/// The records of a log; stops at the first torn or corrupt one (a write
/// cut short when the head was killed) and says how many bytes were good.
fn decode_all(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    'records: while at < bytes.len() {
        let start = at;
        let Some(&op) = bytes.get(at) else { break };
        at += 1;
        let mut parts: Vec<&[u8]> = Vec::with_capacity(3);
        for _ in 0..3 {
            let Some(len) = bytes.get(at..at + 4) else {
                break 'records;
            };
            let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
            at += 4;
            let Some(part) = bytes.get(at..at + len) else {
                break 'records;
            };
            parts.push(part);
            at += len;
        }
        let Some(sum) = bytes.get(at..at + 4) else {
            break;
        };
        if u32::from_le_bytes(sum.try_into().unwrap_or_default()) != fnv1a(&[&bytes[start..at]]) {
            break;
        }
        at += 4;
        let Ok(table) = String::from_utf8(parts[0].to_vec()) else {
            break;
        };
        records.push((op, table, parts[1].to_vec(), parts[2].to_vec()));
        let _ = start;
    }
    let good = records
        .iter()
        .map(|(_, t, k, v)| 17 + t.len() + k.len() + v.len())
        .sum();
    (records, good)
}

impl FileStore {
    pub fn open(dir: &Path, address: &str) -> Result<(FileStore, Entries)> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("cannot create the head storage directory {}", dir.display())
        })?;
        let lock_path = dir.join("LOCK");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            bail!(
                "the head storage {} is in use by another head ({}): stop that head first, or give \
                 this one another --storage",
                dir.display(),
                holder.trim()
            );
        }
        lock.set_len(0)?;
        writeln!(lock, "pid {} address {address}", std::process::id())?;

        let log_path = dir.join("tables.log");
        let mut bytes = Vec::new();
        if log_path.exists() {
            BufReader::new(File::open(&log_path)?)
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {}", log_path.display()))?;
        }
        let (records, good) = decode_all(&bytes);
        if good < bytes.len() {
            tracing::warn!(
                path = %log_path.display(),
                dropped_bytes = bytes.len() - good,
                "the head storage log ends with an incomplete record (the head was killed while \
                 writing it): it is dropped"
            );
        }
        let mut live = HashMap::new();
        for (op, table, key, value) in records {
            match op {
                OP_PUT => {
                    live.insert((table, key), value);
                }
                _ => {
                    live.remove(&(table, key));
                }
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut store = FileStore {
            dir: dir.to_path_buf(),
            log,
            _lock: lock,
            live,
            live_bytes: 0,
            log_bytes: 0,
        };
        // Start from a compact log (this also drops a torn tail).
        store.compact()?;
        let entries = store
            .live
            .iter()
            .map(|((t, k), v)| (t.clone(), k.clone(), v.clone()))
            .collect();
        Ok((store, entries))
    }

    /// Rewrite the log with the live entries only (write, fsync, rename).
    fn compact(&mut self) -> Result<()> {
        let tmp = self.dir.join("tables.log.tmp");
        let path = self.dir.join("tables.log");
        let mut out = Vec::new();
        for ((table, key), value) in &self.live {
            out.extend_from_slice(&encode(OP_PUT, table, key, value));
        }
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.log = OpenOptions::new().append(true).open(&path)?;
        self.live_bytes = out.len() as u64;
        self.log_bytes = out.len() as u64;
        Ok(())
    }

    fn append(&mut self, record: Vec<u8>) -> Result<()> {
        self.log.write_all(&record).with_context(|| {
            format!("cannot write to {}", self.dir.join("tables.log").display())
        })?;
        self.log_bytes += record.len() as u64;
        if self.log_bytes > self.live_bytes * 2 + COMPACT_SLACK_BYTES {
            self.compact()?;
        }
        Ok(())
    }
}

impl Backend for FileStore {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let record = encode(OP_PUT, table, key, value);
        if let Some(old) = self
            .live
            .insert((table.to_string(), key.to_vec()), value.to_vec())
        {
            self.live_bytes = self
                .live_bytes
                .saturating_sub(17 + (table.len() + key.len() + old.len()) as u64);
        }
        self.live_bytes += record.len() as u64;
        self.append(record)
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<()> {
        match self.live.remove(&(table.to_string(), key.to_vec())) {
            Some(old) => {
                self.live_bytes = self
                    .live_bytes
                    .saturating_sub(17 + (table.len() + key.len() + old.len()) as u64);
                self.append(encode(OP_DELETE, table, key, &[]))
            }
            None => Ok(()),
        }
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

// ---- Redis ------------------------------------------------------------------

/// Redis keys: `ember:head:<table>` hashes and the lock.
const REDIS_PREFIX: &str = "ember:head:";
const LOCK_KEY: &str = "ember:head:lock";
/// The lock expires this long after the head stops renewing it.
const LOCK_TTL: Duration = Duration::from_secs(10);
/// Tables the head writes (loaded at start).
const TABLES: [&str; 6] = ["meta", "nodes", "functions", "kv", "actors", "jobs"];

pub struct RedisStore {
    url: String,
    conn: redis::Connection,
    stop_renewal: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RedisStore {
    pub fn open(url: &str, address: &str) -> Result<(RedisStore, Entries)> {
        let client =
            redis::Client::open(url).with_context(|| format!("bad Redis address {url}"))?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .with_context(|| format!("cannot reach Redis at {url}"))?;
        let me = format!(
            "pid {} address {address} nonce {:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        if !take_lock(&mut conn, &me)? {
            let holder: Option<String> = redis::cmd("GET").arg(LOCK_KEY).query(&mut conn)?;
            let holder = holder.unwrap_or_default();
            // The holder's address: a head that no longer answers there
            // (killed, and this is its restart) gives the storage up.
            let holder_address = holder
                .split_whitespace()
                .skip_while(|w| *w != "address")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            // This head has its address bound already: a holder at the
            // same address is a previous head there, now gone.
            let answers = holder_address != address
                && holder_address
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| {
                        std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok()
                    });
            if answers {
                bail!(
                    "the head storage {url} is in use by another head ({holder}): stop that head \
                     first, or give this one another --storage"
                );
            }
            tracing::warn!(%holder, "the head that held the Redis storage does not answer: taking it over");
            let _: () = redis::cmd("DEL").arg(LOCK_KEY).query(&mut conn)?;
            if !take_lock(&mut conn, &me)? {
                bail!("the head storage {url} was taken by another head while this one started");
            }
        }
        let mut entries = Vec::new();
        for table in TABLES {
            let all: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
                .arg(format!("{REDIS_PREFIX}{table}"))
                .query(&mut conn)
                .with_context(|| format!("cannot read the {table} table from {url}"))?;
            entries.extend(all.into_iter().map(|(k, v)| (table.to_string(), k, v)));
        }
        // Keep the lock while this head runs.
        let stop_renewal = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let stop = stop_renewal.clone();
            let mut renew = client.get_connection_with_timeout(Duration::from_secs(5))?;
            std::thread::Builder::new()
                .name("redis-lock".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(LOCK_TTL / 4);
                        let renewed: redis::RedisResult<i64> = redis::cmd("EVAL")
                            .arg(
                                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                                 return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
                            )
                            .arg(1)
                            .arg(LOCK_KEY)
                            .arg(&me)
                            .arg(LOCK_TTL.as_millis() as u64)
                            .query(&mut renew);
                        match renewed {
                            Ok(1) => {}
                            Ok(_) => {
                                tracing::error!("the Redis head lock was taken by another head")
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot renew the Redis head lock")
                            }
                        }
                    }
                })?;
        }
        Ok((
            RedisStore {
                url: url.to_string(),
                conn,
                stop_renewal,
            },
            entries,
        ))
    }
}

fn take_lock(conn: &mut redis::Connection, me: &str) -> Result<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(LOCK_KEY)
        .arg(me)
        .arg("NX")
        .arg("PX")
        .arg(LOCK_TTL.as_millis() as u64)
        .query(conn)?;
    Ok(set.is_some())
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.stop_renewal
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Backend for RedisStore {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let _: () = redis::cmd("HSET")
            .arg(format!("{REDIS_PREFIX}{table}"))
            .arg(key)
            .arg(value)
            .query(&mut self.conn)
            .with_context(|| format!("cannot write to Redis at {}", self.url))?;
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<()> {
        let _: () = redis::cmd("HDEL")
            .arg(format!("{REDIS_PREFIX}{table}"))
            .arg(key)
            .query(&mut self.conn)
            .with_context(|| format!("cannot write to Redis at {}", self.url))?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_puts_and_deletes_across_reopen_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, entries) = FileStore::open(dir.path(), "127.0.0.1:1").unwrap();
            assert!(entries.is_empty());
            store.put("kv", b"a", b"1").unwrap();
            store.put("kv", b"b", b"2").unwrap();
            store.put("kv", b"a", b"3").unwrap();
            store.delete("kv", b"b").unwrap();
            store.put("actors", b"x", &[0u8; 100]).unwrap();
            // A second head on the same directory is refused, naming the first.
            let err = FileStore::open(dir.path(), "127.0.0.1:2").err().unwrap();
            assert!(err.to_string().contains("address 127.0.0.1:1"), "{err}");
        }
        // The head was killed halfway through a write.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join("tables.log"))
            .unwrap();
        let torn = encode(OP_PUT, "kv", b"c", b"never");
        log.write_all(&torn[..torn.len() - 3]).unwrap();
        drop(log);
        let (_store, mut entries) = FileStore::open(dir.path(), "127.0.0.1:3").unwrap();
        entries.sort();
        assert_eq!(
            entries,
            vec![
                ("actors".to_string(), b"x".to_vec(), vec![0u8; 100]),
                ("kv".to_string(), b"a".to_vec(), b"3".to_vec()),
            ]
        );
    }

    #[test]
    fn the_log_is_compacted_when_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = FileStore::open(dir.path(), "127.0.0.1:1").unwrap();
        let value = vec![7u8; 64 << 10];
        for _ in 0..300 {
            store.put("kv", b"same", &value).unwrap();
        }
        let size = std::fs::metadata(dir.path().join("tables.log"))
            .unwrap()
            .len();
        assert!(size < (COMPACT_SLACK_BYTES + (1 << 20)), "{size}");
        drop(store);
        let (_, entries) = FileStore::open(dir.path(), "127.0.0.1:1").unwrap();
        assert_eq!(entries, vec![("kv".to_string(), b"same".to_vec(), value)]);
    }
}
