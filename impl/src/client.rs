//! A minimal RESP2 client for the benchmark, `ballot cluster status` and the tests.

use crate::resp::{parse_value, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a command failed at the connection level.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed or closed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not RESP.
    #[error("bad reply: {0}")]
    Protocol(String),
}

/// One connection to a RESP server.
pub struct Client {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            input: Vec::new(),
            output: Vec::new(),
        })
    }

    /// Sends one command (its arguments as bulk strings) and reads its reply.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, ClientError> {
        self.output.clear();
        Value::Array(
            args.iter()
                .map(|a| Value::Bulk(a.as_ref().to_vec()))
                .collect(),
        )
        .encode(&mut self.output);
        self.stream.write_all(&self.output).await?;
        let mut chunk = [0u8; 16 << 10];
        loop {
            match parse_value(&self.input) {
                Ok(Some((value, used))) => {
                    self.input.drain(..used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(error) => return Err(ClientError::Protocol(error.to_string())),
            }
            let read = self.stream.read(&mut chunk).await?;
            if read == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.input.extend_from_slice(&chunk[..read]);
        }
    }

    /// `INFO`, parsed into its `field:value` lines (section headers dropped).
    pub async fn info(
        &mut self,
    ) -> Result<std::collections::BTreeMap<String, String>, ClientError> {
        match self.call(&["INFO"]).await? {
            // A bulk string in RESP2, which this client speaks; verbatim text would
            // come from a connection switched to RESP3.
            Value::Bulk(bytes) | Value::Verbatim { text: bytes, .. } => {
                Ok(String::from_utf8_lossy(&bytes)
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .map(|(field, value)| (field.to_string(), value.to_string()))
                    .collect())
            }
            other => Err(ClientError::Protocol(format!("INFO answered {other:?}"))),
        }
    }
}
