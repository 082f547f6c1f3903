//! For `benches/load.sh --allocs`: the bench-only binaries `bare-proxy-counted` and
//! `gateway-counted` run stats_alloc's counting system allocator, and this thread
//! writes "allocations bytes" (allocations and reallocations; bytes requested) to the file
//! `ALLOC_COUNT_FILE` every 100 ms, so the script can divide by the requests wrk counted.

use stats_alloc::StatsAlloc;

pub fn report_to_file(stats: &'static StatsAlloc<std::alloc::System>) {
    let Some(path) = std::env::var_os("ALLOC_COUNT_FILE") else {
        return;
    };
    let tmp = {
        let mut t = path.clone();
        t.push(".tmp");
        t
    };
    std::thread::spawn(move || loop {
        let s = stats.stats();
        let line = format!(
            "{} {}\n",
            s.allocations + s.reallocations,
            s.bytes_allocated as isize + s.bytes_reallocated.max(0)
        );
        if std::fs::write(&tmp, line).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    });
}
