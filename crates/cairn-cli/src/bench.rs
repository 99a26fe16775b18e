//! `rados bench`: concurrent whole-object writes for a time, then sequential or random reads of
//! what was written; prints the same summary as Ceph's `rados bench`.

use bytes::Bytes;
use cairn_client::IoCtx;
use cairn_types::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Stats {
    latencies_s: Vec<f64>,
    /// Ops completed in each whole second since the start.
    per_second: Vec<u64>,
}

impl Stats {
    fn record(&mut self, start: Instant, latency: f64) {
        self.latencies_s.push(latency);
        let sec = start.elapsed().as_secs() as usize;
        if self.per_second.len() <= sec {
            self.per_second.resize(sec + 1, 0);
        }
        self.per_second[sec] += 1;
    }
}

fn mean_stddev(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn object_name(prefix: &str, n: u64) -> String {
    format!("{prefix}_object{n}")
}

pub async fn run(
    io: &IoCtx,
    mode: &str,
    duration: Duration,
    block: usize,
    threads: usize,
    no_cleanup: bool,
    run_name: &str,
) -> Result<ExitCode, Error> {
    match mode {
        "write" => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let prefix = format!("benchmark_data_{}_{}", host.trim(), std::process::id());
            println!(
                "hints = 1\nMaintaining {threads} concurrent writes of {block} bytes to objects of size {block} for up to {} seconds or 0 objects\nObject prefix: {prefix}",
                duration.as_secs()
            );
            let prefix2 = prefix.clone();
            let (written, stats, elapsed) = drive(io, threads, duration, None, block, move |io, n| {
                let prefix = &prefix2;
                let data = Bytes::from(vec![(n % 251) as u8; block]);
                let name = object_name(prefix, n);
                async move { io.write_full(&name, data).await }
            })
            .await?;
            report("Total writes made", written, block, &stats, elapsed, true);
            let meta = format!("{prefix}\n{written}\n{block}\n");
            io.write_full(run_name, Bytes::from(meta)).await?;
            if !no_cleanup {
                println!("Cleaning up (deleting benchmark objects)");
                for n in 0..written {
                    io.remove(&object_name(&prefix, n)).await?;
                }
                io.remove(run_name).await?;
                println!("Clean up completed and total clean up time :{:.6}", elapsed);
            }
        }
        "seq" | "rand" => {
            let meta = io.read(run_name, 0, 0).await.map_err(|e| {
                Error::new(e.errno, format!("no benchmark data to read ({run_name}: {}); run `rados bench … write --no-cleanup` first", e.errno_text()))
            })?;
            let meta = String::from_utf8_lossy(&meta).to_string();
            let mut lines = meta.lines();
            let prefix = lines.next().unwrap_or_default().to_string();
            let count: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
            let size: usize = lines.next().and_then(|l| l.parse().ok()).unwrap_or(block);
            if count == 0 {
                return Err(Error::enoent("the benchmark wrote no objects"));
            }
            let sequential = mode == "seq";
            let limit = if sequential { Some(count) } else { None };
            let (read, stats, elapsed) = drive(io, threads, duration, limit, size, move |io, n| {
                let n = if sequential { n } else { rand::random::<u64>() % count };
                let name = object_name(&prefix, n);
                async move {
                    let data = io.read(&name, 0, 0).await?;
                    if data.len() != size {
                        return Err(Error::eio(format!(
                            "{name}: read {} bytes, expected {size}",
                            data.len()
                        )));
                    }
                    Ok(())
                }
            })
            .await?;
            report("Total reads made", read, size, &stats, elapsed, false);
        }
        other => {
            return Err(Error::einval(format!("rados bench: unknown mode '{other}' (write, seq, rand)")))
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `threads` workers issuing `op(n)` for n = 0, 1, … until `duration` passes (or `limit`
/// ops were started); prints a progress line each second.
async fn drive<F, Fut>(
    io: &IoCtx,
    threads: usize,
    duration: Duration,
    limit: Option<u64>,
    op_bytes: usize,
    op: F,
) -> Result<(u64, Stats, f64), Error>
where
    F: Fn(IoCtx, u64) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stats = Arc::new(Mutex::new(Stats::default()));
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (io, op, next, done, stats) = (io.clone(), op.clone(), next.clone(), done.clone(), stats.clone());
        workers.push(tokio::spawn(async move {
            loop {
                if start.elapsed() >= duration {
                    return Ok::<(), Error>(());
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|l| n >= l) {
                    return Ok(());
                }
                let t0 = Instant::now();
                op(io.clone(), n).await?;
                stats.lock().expect("stats lock").record(start, t0.elapsed().as_secs_f64());
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = {
        let (done, next, stats) = (done.clone(), next.clone(), stats.clone());
        let mib = op_bytes as f64 / (1 << 20) as f64;
        tokio::spawn(async move {
            println!("  sec Cur ops   started  finished  avg MB/s  cur MB/s last lat(s)  avg lat(s)");
            let mut last = 0;
            for sec in 1u64.. {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let d = done.load(Ordering::Relaxed);
                let started = next.load(Ordering::Relaxed).min(limit.unwrap_or(u64::MAX));
                let (avg_lat, last_lat) = {
                    let s = stats.lock().expect("stats lock");
                    (mean_stddev(&s.latencies_s).0, s.latencies_s.last().copied().unwrap_or(0.0))
                };
                let avg_mb = d as f64 * mib / sec as f64;
                let cur_mb = (d - last) as f64 * mib;
                let cur_ops = started.saturating_sub(d);
                println!("{sec:5} {cur_ops:7} {started:9} {d:9} {avg_mb:9.3} {cur_mb:9.3} {last_lat:11.6} {avg_lat:11.6}");
                last = d;
            }
        })
    };
    let mut first_err = None;
    for w in workers {
        if let Ok(Err(e)) = w.await {
            first_err.get_or_insert(e);
        }
    }
    progress.abort();
    if let Some(e) = first_err {
        return Err(e);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = std::mem::take(&mut *stats.lock().expect("stats lock"));
    Ok((done.load(Ordering::Relaxed), stats, elapsed))
}

fn report(what: &str, ops: u64, size: usize, stats: &Stats, elapsed: f64, write: bool) {
    let mib = size as f64 / (1 << 20) as f64;
    let per_sec: Vec<f64> = stats.per_second.iter().map(|n| *n as f64).collect();
    let (iops_mean, iops_sd) = mean_stddev(&per_sec);
    let (lat_mean, lat_sd) = mean_stddev(&stats.latencies_s);
    let lat_max = stats.latencies_s.iter().cloned().fold(0.0, f64::max);
    let lat_min = stats.latencies_s.iter().cloned().fold(f64::INFINITY, f64::min);
    let max_ops = per_sec.iter().cloned().fold(0.0, f64::max);
    let min_ops = per_sec.iter().cloned().fold(f64::INFINITY, f64::min);
    println!("Total time run:         {elapsed:.4}");
    println!("{what}:      {ops}");
    if write {
        println!("Write size:             {size}");
        println!("Object size:            {size}");
    } else {
        println!("Read size:              {size}");
        println!("Object size:            {size}");
    }
    println!("Bandwidth (MB/sec):     {:.3}", ops as f64 * mib / elapsed.max(1e-9));
    if write {
        println!("Stddev Bandwidth:       {:.3}", iops_sd * mib);
        println!("Max bandwidth (MB/sec): {:.0}", max_ops * mib);
        println!("Min bandwidth (MB/sec): {:.0}", if min_ops.is_finite() { min_ops * mib } else { 0.0 });
    }
    println!("Average IOPS:           {:.0}", ops as f64 / elapsed.max(1e-9));
    println!("Stddev IOPS:            {iops_sd:.5}");
    println!("Max IOPS:               {max_ops:.0}");
    println!("Min IOPS:               {:.0}", if min_ops.is_finite() { min_ops } else { 0.0 });
    println!("Average Latency(s):     {lat_mean:.6}");
    if write {
        println!("Stddev Latency(s):      {lat_sd:.6}");
    }
    println!("Max latency(s):         {lat_max:.6}");
    println!("Min latency(s):         {:.6}", if lat_min.is_finite() { lat_min } else { 0.0 });
    let _ = iops_mean;
}
