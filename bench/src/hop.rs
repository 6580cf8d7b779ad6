//! A simulated network hop (issue 13): a TCP proxy on 127.0.0.1 between the benchmark's
//! connections and the server that holds every chunk it reads for half the round-trip time
//! before passing it on, in each direction.
//!
//! Each direction of a connection is a delay line of two threads: a reader stamps each chunk
//! with the time it may leave and queues it; a writer sleeps until then and sends it. Chunks
//! read while earlier ones wait are not delayed further (the wire is not a queue of sleeps),
//! and the threads sleep rather than spin, so the proxy takes almost none of the CPU the
//! server needs. A sleep overshoots (the kernel's timer slack, then the wake-up): the
//! threads ask for 1 ns of slack, and each sleep ends early by the median overshoot measured
//! when the hop starts. `measured_round_trip` reports what the hop really adds.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

pub struct Hop {
    pub port: u16,
}

impl Hop {
    /// Starts a proxy to `upstream` that adds `round_trip` in all (half each way). It runs
    /// until the process ends.
    pub fn start(upstream: SocketAddr, round_trip: Duration) -> io::Result<Hop> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let one_way = round_trip / 2;
        let early = overshoot();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if let Err(e) = relay(client, upstream, one_way, early) {
                    eprintln!("hop: a connection failed to start: {e}");
                }
            }
        });
        Ok(Hop { port })
    }
}

fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    one_way: Duration,
    early: Duration,
) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    delay_line(client.try_clone()?, server.try_clone()?, one_way, early);
    delay_line(server, client, one_way, early);
    Ok(())
}

/// Copies `from` to `to`, each chunk `delay` after it was read (a sleep `early` less).
fn delay_line(mut from: TcpStream, mut to: TcpStream, delay: Duration, early: Duration) {
    let (queue, chunks) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if queue
                        .send((Instant::now() + delay, buffer[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // Dropping `queue` ends the writer once it has sent what is queued.
    });
    thread::spawn(move || {
        precise_timers();
        for (due, chunk) in chunks {
            let now = Instant::now();
            if due > now + early {
                thread::sleep(due - now - early);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Asks the kernel to end this thread's sleeps on time (default slack: 50 µs).
fn precise_timers() {
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// The median amount by which a 200 µs sleep overshoots here.
fn overshoot() -> Duration {
    thread::spawn(|| {
        precise_timers();
        let asked = Duration::from_micros(200);
        let mut over: Vec<Duration> = (0..51)
            .map(|_| {
                let t = Instant::now();
                thread::sleep(asked);
                t.elapsed().saturating_sub(asked)
            })
            .collect();
        over.sort_unstable();
        over[over.len() / 2]
    })
    .join()
    .unwrap_or_default()
}

/// `config` with the server's address replaced by the hop's (`Config::host` and `port` add
/// to the lists rather than replace them, and a second address would be a fallback).
pub fn through(config: &postgres::Config, hop: &Hop) -> postgres::Config {
    let mut via = postgres::Config::new();
    via.host("127.0.0.1").port(hop.port);
    if let Some(user) = config.get_user() {
        via.user(user);
    }
    if let Some(password) = config.get_password() {
        via.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        via.dbname(dbname);
    }
    if let Some(name) = config.get_application_name() {
        via.application_name(name);
    }
    via
}

/// The median time of `SELECT 1` (one round trip, prepared) over a new connection.
pub fn measured_round_trip(config: &postgres::Config) -> crate::Result<Duration> {
    let mut client: Client = config.connect(NoTls)?;
    let select = client.prepare("SELECT 1")?;
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            client.query_one(&select, &[]).map(|_| t.elapsed())
        })
        .collect::<std::result::Result<_, _>>()?;
    times.sort_unstable();
    Ok(times[times.len() / 2])
}
