//! The proxy of `bare-proxy` and `bare-proxy-counted` (benches/support/bare_proxy.rs says what
//! it is for): pingora's `ProxyHttp` with nothing but `upstream_peer`.

use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (arg(&args, "--listen"), arg(&args, "--upstream")) else {
        eprintln!("usage: bare-proxy --listen ADDR --upstream ADDR [--threads N]");
        std::process::exit(2);
    };
    let Ok(upstream) = upstream.parse() else {
        eprintln!("--upstream: not an IP address and port: {upstream}");
        std::process::exit(2);
    };
    let threads = arg(&args, "--threads")
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let conf = ServerConf {
        threads,
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_listener(
        ListenerConfig::tcp(listen.as_str()).l4_buffer(L4BufferSettings::new(
            0,
            pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE,
        )),
    );
    server.add_service(proxy);
    server.run_forever();
}
