//! Malformed input closes only the offending connection: garbage bytes, a header shorter than
//! itself, an oversized length, a packet cut short and a corrupt LOGIN7 each end their own socket,
//! while a tiberius connection opened before keeps working, and new ones can still log in.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Sim, rows};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits until the server closes `s` (EOF or reset); fails after a deadline.
async fn assert_closed_by_server(mut s: TcpStream, what: &str) {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!("{what}: server kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            // The server may answer something first (it never should here, but do not depend on it).
            Ok(Ok(_)) => continue,
        }
    }
}

fn prelogin_not_sup() -> Vec<u8> {
    // VERSION, ENCRYPTION = NOT_SUP, terminator.
    let mut p = vec![0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xFF];
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 2]);
    let mut out = vec![0x12, 0x01, 0, (p.len() + 8) as u8, 0, 0, 1, 0];
    out.extend(p);
    out
}

#[tokio::test]
async fn malformed_packets_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), &[]);
    let mut good = sim.connect().await;
    assert_eq!(rows(&mut good, "SELECT 1").await.len(), 1);

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe".to_vec(),
            false,
        ),
        (
            "header shorter than itself",
            vec![0x12, 0x01, 0x00, 0x04, 0, 0, 1, 0],
            false,
        ),
        (
            "oversized length",
            vec![0x12, 0x01, 0xFF, 0xFF, 0, 0, 1, 0, 1, 2, 3],
            false,
        ),
        (
            "truncated packet",
            vec![0x12, 0x01, 0x00, 0x40, 0, 0, 1, 0, 1, 2, 3, 4],
            true,
        ),
        (
            "unknown packet type",
            vec![0x77, 0x01, 0x00, 0x08, 0, 0, 1, 0],
            false,
        ),
        (
            "prelogin garbage options",
            vec![
                0x12, 0x01, 0x00, 0x0D, 0, 0, 1, 0, 0x01, 0xFF, 0xF0, 0x00, 0x01,
            ],
            false,
        ),
    ];
    let mut tasks = Vec::new();
    for (what, bytes, half_close) in cases {
        let addr = sim.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            if half_close {
                s.shutdown().await.unwrap();
            }
            assert_closed_by_server(s, what).await;
        }));
    }
    // A valid PRELOGIN followed by a LOGIN7 whose field offsets point outside the packet.
    let addr = sim.addr;
    tasks.push(tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&prelogin_not_sup()).await.unwrap();
        let mut hdr = [0u8; 8];
        s.read_exact(&mut hdr).await.unwrap();
        let len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
        let mut body = vec![0u8; len - 8];
        s.read_exact(&mut body).await.unwrap();
        let mut login = vec![0u8; 94];
        login[36 + 4] = 0xF0; // UserName offset far outside
        login[36 + 6] = 0x10;
        let mut pkt = vec![0x10, 0x01, 0, (94 + 8) as u8, 0, 0, 1, 0];
        pkt.extend(login);
        s.write_all(&pkt).await.unwrap();
        assert_closed_by_server(s, "corrupt LOGIN7").await;
    }));
    // Meanwhile the established connection keeps answering.
    for _ in 0..20 {
        assert_eq!(
            rows(&mut good, "SELECT name FROM sys.databases")
                .await
                .len(),
            4
        );
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(rows(&mut good, "SELECT @@SPID").await.len(), 1);
    let mut fresh = sim.connect().await;
    assert_eq!(
        rows(&mut fresh, "SELECT 2").await[0].get::<i32, _>(0),
        Some(2)
    );
}
