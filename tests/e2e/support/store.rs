//! Running one stage test on both session stores: [`StoreUnderTest`] and
//! [`for_both_stores!`](crate::for_both_stores).

use std::time::Duration;

use super::config::{GatewayConfig, StoreSpec};
use super::gateway::Gateway;
use super::redis::RedisServer;

/// The session store a stage test runs on: memory, or a fresh `redis-server` that lives as
/// long as this value. See [`for_both_stores!`](crate::for_both_stores).
pub struct StoreUnderTest {
    pub spec: StoreSpec,
    pub redis: Option<RedisServer>,
}

impl StoreUnderTest {
    pub async fn memory() -> StoreUnderTest {
        StoreUnderTest {
            spec: StoreSpec::Memory,
            redis: None,
        }
    }

    pub async fn redis() -> StoreUnderTest {
        let redis = RedisServer::start().await;
        StoreUnderTest {
            spec: StoreSpec::Redis { url: redis.url() },
            redis: Some(redis),
        }
    }

    /// Start a gateway with `cfg` on this store; with Redis, once `/readyz` says the store
    /// answers and the revocation set is synchronised.
    pub async fn start(&self, cfg: GatewayConfig) -> Gateway {
        let gw = Gateway::start(cfg.store(self.spec.clone())).await;
        if self.redis.is_some() {
            gw.wait_readyz(200, Duration::from_secs(10)).await;
        }
        gw
    }
}

/// `for_both_stores!(a, b);` turns each `async fn a(store: StoreUnderTest)` of the calling
/// module into two tests, `a::memory` and `a::redis`: the behaviour must not depend on the
/// store.
#[macro_export]
macro_rules! for_both_stores {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn memory() {
                    super::$name($crate::harness::StoreUnderTest::memory().await).await
                }

                #[tokio::test]
                async fn redis() {
                    super::$name($crate::harness::StoreUnderTest::redis().await).await
                }
            }
        )+
    };
}

/// The public origin of instances that share one store (tokens of one are valid on the other).
pub const SHARED_ORIGIN: &str = "https://sessions.example.test";

/// Two gateways sharing `store`, their secrets and their public origin; both ready.
pub async fn two_instances(store: StoreSpec, cfg: GatewayConfig) -> (Gateway, Gateway) {
    let (access, refresh) = (super::util::random_secret(), super::util::random_secret());
    let cfg = cfg
        .store(store)
        .secrets(&access, &refresh)
        .public_origin(SHARED_ORIGIN);
    let (a, b) = tokio::join!(Gateway::start(cfg.clone()), Gateway::start(cfg));
    tokio::join!(
        a.wait_readyz(200, Duration::from_secs(10)),
        b.wait_readyz(200, Duration::from_secs(10))
    );
    (a, b)
}

/// The library's Redis store configuration for one server (`url`) or a cluster (`nodes`), as
/// store-level tests and benchmarks drive `RedisStore` directly.
pub fn redis_store_config(
    url: Option<String>,
    nodes: Vec<String>,
) -> sessiongate::config::RedisConfig {
    sessiongate::config::RedisConfig {
        url: url.map(|u| sessiongate::config::Secret::new(u.into_bytes())),
        cluster_nodes: nodes,
        password: None,
        username: None,
        ca_pem: None,
        pool_size: 8,
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(5),
        key_prefix: "sg".into(),
    }
}
