//! [`Services`]: hosting — long-running processes of the caller's tenant that the node keeps
//! running (restarting them when they exit) and serves at a stable URL, with their logs.

use ai2in_api::{
    DeployServiceRequest, LogLine, RedeployServiceRequest, Service, ServiceList, ServiceLogs,
    ServiceLogsRequest,
};
use futures_util::Stream;
use reqwest::Method;

use crate::error::Result;
use crate::http::{Empty, Http};
use crate::sse;

/// The services of the caller's tenant; from [`crate::Client::services`]. A service is
/// named by its id (`svc_…`) or its name. [`Services::deploy`] answers once its process
/// started, `deploying`; it is `running` (and its `url` serves) once its port accepts
/// connections, or its `health_path` answers.
///
/// ```no_run
/// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
/// use ai2in_client::{DeployServiceRequest, ServiceStatus};
/// let services = client.services();
/// let service = services
///     .deploy(DeployServiceRequest {
///         name: "web".into(),
///         image: "host".into(),
///         start_cmd: Some("python3 -m http.server 8000".into()),
///         internal_port: Some(8000),
///         ..Default::default()
///     })
///     .await?;
/// while services.get("web").await?.status != ServiceStatus::Running {
///     tokio::time::sleep(std::time::Duration::from_millis(200)).await;
/// }
/// println!("serving at {}", service.url.unwrap_or_default());
/// for line in services.logs("web", None, Some(20)).await?.logs {
///     println!("{} {:?} {}", line.timestamp, line.stream, line.line);
/// }
/// services.delete("web").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Services {
    http: Http,
}

impl Services {
    pub(crate) fn new(http: Http) -> Self {
        Services { http }
    }

    /// Deploys a service and answers it, `deploying`, once its process started. A name
    /// the tenant has already is [`crate::Error::AlreadyExists`], a bad name or field (or
    /// an image with neither `start_cmd` nor a command of its own)
    /// [`crate::Error::BadRequest`], past the tenant's quota of services
    /// [`crate::Error::QuotaExceeded`], a full node [`crate::Error::AtCapacity`]; the
    /// image's pull fails as [`crate::Images::pull`] does.
    pub async fn deploy(&self, request: DeployServiceRequest) -> Result<Service> {
        self.http.post("/v1/hosting/services", &request).await
    }

    /// The tenant's services, oldest first.
    pub async fn list(&self) -> Result<Vec<Service>> {
        let list: ServiceList = self.http.get("/v1/hosting/services").await?;
        Ok(list.services)
    }

    /// A service by id or name; [`crate::Error::NotFound`] when the tenant has none such.
    pub async fn get(&self, id_or_name: &str) -> Result<Service> {
        self.http.get(&service_path(id_or_name, "")).await
    }

    /// Lines of a service's log, oldest first, kept across restarts and redeploys: those
    /// after the cursor `since` (a `next_since` or a line's `seq`), else the most recent;
    /// at most `limit` (default 100, at most 1000).
    pub async fn logs(
        &self,
        id_or_name: &str,
        since: Option<u64>,
        limit: Option<u32>,
    ) -> Result<ServiceLogs> {
        let body = ServiceLogsRequest { since, limit };
        self.http
            .post(&service_path(id_or_name, "/logs"), &body)
            .await
    }

    /// A service's log as it is written: the lines after `since` (the last 100 when
    /// `None`), then each new line as it comes. The stream goes on as long as the service
    /// lives (drop it to stop); it ends when the node closes it.
    ///
    /// ```no_run
    /// # async fn demo(client: ai2in_client::Client) -> ai2in_client::Result<()> {
    /// use futures_util::StreamExt;
    /// let mut lines = client.services().follow_logs("web", None).await?;
    /// while let Some(line) = lines.next().await {
    ///     let line = line?;
    ///     println!("{} {:?} {}", line.seq, line.stream, line.line);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn follow_logs(
        &self,
        id_or_name: &str,
        since: Option<u64>,
    ) -> Result<impl Stream<Item = Result<LogLine>> + Send + Unpin + 'static> {
        let query = ServiceLogsRequest { since, limit: None };
        let request = self
            .http
            .request(Method::GET, &service_path(id_or_name, "/logs/stream"))
            .query(&query);
        let response = self.http.send(request).await?;
        Ok(sse::named(response, "log"))
    }

    /// Replaces a service's instance by one with `changes` (`Default::default()` starts the
    /// same again, pulling its image anew) and answers once the new instance serves; the
    /// old one serves until then. A new instance that never becomes ready is
    /// [`crate::Error::DeployFailed`], and the old one keeps serving.
    pub async fn redeploy(
        &self,
        id_or_name: &str,
        changes: RedeployServiceRequest,
    ) -> Result<Service> {
        self.http
            .post(&service_path(id_or_name, "/redeploy"), &changes)
            .await
    }

    /// Stops a service (SIGTERM, a grace period, then SIGKILL) and answers it `stopped`;
    /// the node does not restart it until [`Services::start`].
    pub async fn stop(&self, id_or_name: &str) -> Result<Service> {
        self.http
            .post(&service_path(id_or_name, "/stop"), &Empty {})
            .await
    }

    /// Starts a stopped service again and answers it `deploying` (a service that is not
    /// stopped is answered as it is).
    pub async fn start(&self, id_or_name: &str) -> Result<Service> {
        self.http
            .post(&service_path(id_or_name, "/start"), &Empty {})
            .await
    }

    /// Deletes a service: its instance stops and its URL answers no more (the volumes it
    /// mounted stay).
    pub async fn delete(&self, id_or_name: &str) -> Result<()> {
        self.http.delete(&service_path(id_or_name, "")).await
    }
}

/// The route of one service, then `route` (empty, or starting with `/`) below it.
fn service_path(id_or_name: &str, route: &str) -> String {
    crate::http::route("/v1/hosting/services/", id_or_name) + route
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_a_service_by_id_or_name() {
        assert_eq!(service_path("svc_abc", ""), "/v1/hosting/services/svc_abc");
        assert_eq!(
            service_path("web", "/logs/stream"),
            "/v1/hosting/services/web/logs/stream"
        );
        assert_eq!(
            service_path("a/b", "/stop"),
            "/v1/hosting/services/a%2Fb/stop"
        );
    }
}
