//! [`RateLimit`]: the service that checks before calling the inner one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use http::{Request, Response};
use tower::Service;

use super::config::LayerConfig;
use super::future::ResponseFuture;
use super::headers;
use crate::error::Error;
use crate::store::Store;

/// Rate-limits the requests of the wrapped service; see
/// [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Debug)]
pub struct RateLimit<Inner, S: Store> {
    inner: Inner,
    config: Arc<LayerConfig<S>>,
}

impl<Inner: Clone, S: Store> Clone for RateLimit<Inner, S> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<Inner, S: Store> RateLimit<Inner, S> {
    pub(super) fn new(inner: Inner, config: Arc<LayerConfig<S>>) -> Self {
        RateLimit { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &Inner {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }

    /// Unwraps the service, dropping the rate limit.
    pub fn into_inner(self) -> Inner {
        self.inner
    }
}

impl<Inner, S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<Inner, S>
where
    Inner: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    Inner::Future: Send + 'static,
    Inner::Error: Send,
    S: Store,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = Inner::Error;
    type Future = ResponseFuture<Response<ResBody>, Inner::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        ResponseFuture::new(async move {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0)
                .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
            let ip: IpAddr = config.proxies.client_ip(peer, request.headers());
            let (parts, body) = request.into_parts();
            let mut key = config.key_by.key(&parts, ip);
            if let Some(scope) = &config.scope {
                key = [scope.as_str(), ":", &key].concat();
            }
            let request = Request::from_parts(parts, body);
            let decision = match config
                .limiter
                .check(&config.policy, &key, config.cost)
                .await
            {
                Ok(decision) => decision,
                Err(Error::InvalidInput { problem, .. }) => {
                    return Ok(headers::bad_key(format!(
                        "cannot rate-limit this request: {problem}"
                    )));
                }
                Err(error) => {
                    tracing::warn!(error = %error, "rate limiter unavailable; rejecting (fail closed)");
                    return Ok(headers::unavailable());
                }
            };
            if !decision.allowed {
                return Ok(headers::rejected(
                    &config.policy,
                    config.policy_header.as_ref(),
                    &decision,
                    config.legacy_headers,
                ));
            }
            let mut response = inner.call(request).await?;
            headers::apply(
                response.headers_mut(),
                &config.policy,
                config.policy_header.as_ref(),
                &decision,
                config.legacy_headers,
            );
            Ok(response)
        })
    }
}
