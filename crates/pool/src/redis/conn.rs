//! Connections to Redis and reading its replies without trusting their shape.

use std::time::Duration;

use redis::{Connection, RedisError, Value};

use super::keys::GROUP;

/// How long one reply may take before the connection counts as broken (a stopped or
/// unreachable server): well above every `BLOCK` the backend uses.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for `url`, its TCP connections without Nagle's delay (requests are small and each
/// waits for its answer).
pub(crate) fn client(url: &str) -> Result<redis::Client, RedisError> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    redis::Client::open(info)
}

/// A connection to `client`'s server, with timeouts on connect, reads and writes.
pub(crate) fn connect(client: &redis::Client) -> Result<Connection, RedisError> {
    let c = client.get_connection_with_timeout(IO_TIMEOUT)?;
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(c)
}

/// Create the tasks stream's consumer group (from the stream's start, so entries added
/// before it are delivered too), and the stream if need be. An existing group is fine.
pub(crate) fn ensure_group(c: &mut Connection, tasks: &str) -> Result<(), RedisError> {
    match redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(tasks)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query::<Value>(c)
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `e` says the consumer group (or its stream) is gone: Redis restarted empty.
pub(crate) fn is_nogroup(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

/// The bytes of a string reply.
pub(crate) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A string reply as text.
pub(crate) fn text(v: &Value) -> Option<&str> {
    std::str::from_utf8(bytes(v)?).ok()
}

/// A stream entry: its id and its fields.
#[derive(Debug)]
pub(crate) struct Entry {
    pub id: String,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// `[id, [field, value, ...]]`.
    pub fn parse(v: Value) -> Option<Entry> {
        let Value::Array(mut parts) = v else {
            return None;
        };
        if parts.len() != 2 {
            return None;
        }
        let fv = parts.pop()?;
        let id = text(&parts[0])?.to_string();
        let mut fields = Vec::new();
        if let Value::Array(fv) = fv {
            let mut it = fv.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                match (k, v) {
                    (Value::BulkString(k), Value::BulkString(v)) => fields.push((k, v)),
                    _ => return None,
                }
            }
        }
        Some(Entry { id, fields })
    }

    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    pub fn take(&mut self, name: &str) -> Option<Vec<u8>> {
        let i = self.fields.iter().position(|(k, _)| k == name.as_bytes())?;
        Some(self.fields.swap_remove(i).1)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.field(name)?).ok()
    }

    pub fn number(&self, name: &str) -> Option<u64> {
        self.text(name)?.parse().ok()
    }
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one stream: `[[key, [entry, ...]]]`
/// (RESP2) or a map of key to entries (RESP3). Malformed entries are left out.
pub(crate) fn read_reply(v: Value) -> Vec<Entry> {
    let streams: Vec<Value> = match v {
        Value::Array(a) => a
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(m) => m.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    streams
        .into_iter()
        .flat_map(|s| match s {
            Value::Array(entries) => entries,
            _ => Vec::new(),
        })
        .filter_map(Entry::parse)
        .collect()
}
