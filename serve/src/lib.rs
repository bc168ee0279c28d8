//! `cove serve`: Cove's verifiers as an HTTP service.
//!
//! - `POST /run_code`: SandboxFusion's protocol ([`sandbox_fusion`]), so a verl user
//!   switches by pointing `sandbox_fusion.url` here.
//! - `POST /verify/math`, `POST /verify/code`: Cove's own JSON, one item (an object) or a
//!   batch (an array of objects) per request.
//! - `GET /health`: workers alive and requests in flight.
//!
//! Programs run in the code verifier's worker processes ([`WorkerPool`]); the executable
//! serving must call [`cove_verifiers::code::serve_if_worker`] first in `main` (the `cove`
//! binary does). Requests beyond the workers wait in a bounded queue; a full queue is
//! answered 503, a body over the size limit 413, malformed JSON 400, a request that
//! outlives its timeout 504. Every error body is `{"status": "SandboxError", "message"}`.

pub mod sandbox_fusion;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cove_verifiers::code::{
    CodeConfig, CodeError, RuntimeKind, TestSuite, WorkerCommand, WorkerPool,
};
use cove_verifiers::math::{self, MathOptions};
use rayon::prelude::*;
use sandbox_fusion::{Caps, Plan, RunCodeRequest, RunCodeResponse, Status};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// `cove serve`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Sandbox worker processes (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Requests that may wait for a worker; one more is answered 503.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,
    /// Largest request body in bytes; a larger one is answered 413.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Seconds a request may take, waiting included; a slower one is answered 504.
    #[arg(long, default_value_t = 120.0)]
    pub request_timeout_s: f64,
    /// The longest `run_timeout` honoured, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_run_timeout_s: f64,
    /// The largest memory cap in MB (also the cap of `memory_limit_MB: -1`).
    #[arg(long, default_value_t = 1024)]
    pub max_memory_mb: u64,
    /// Python runtime of the sandbox.
    #[arg(long, value_enum, default_value_t = Runtime::Component)]
    pub runtime: Runtime,
}

/// The sandbox runtimes, as `--runtime` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// The pre-initialised CPython component (fast start).
    Component,
    /// The CPython 3.12 preview1 build (slow start, no set-up build step).
    Preview1,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An option is out of range.
    #[error("{0}")]
    Options(String),
    /// The sandbox or its workers could not start.
    #[error(transparent)]
    Sandbox(#[from] CodeError),
    /// Binding, serving or the async runtime failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Shared state of the handlers.
struct App {
    pool: WorkerPool,
    /// Threads that hand a batch's items to the workers, one per worker.
    batch_threads: rayon::ThreadPool,
    workers: usize,
    /// Requests running or waiting for a worker: workers + queue permits.
    slots: Arc<Semaphore>,
    capacity: usize,
    caps: Caps,
    request_timeout: Duration,
}

/// Starts the workers, binds, prints `cove serve: listening on http://ADDR` on stdout and
/// serves until Ctrl-C.
pub fn run(args: &ServeArgs) -> Result<(), ServeError> {
    let positive = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(ServeError::Options(format!(
                "--{name} must be a positive number of seconds, got {v}"
            )))
        }
    };
    let request_timeout = positive("request-timeout-s", args.request_timeout_s)?;
    let max_run_timeout = positive("max-run-timeout-s", args.max_run_timeout_s)?;
    if args.max_memory_mb == 0 {
        return Err(ServeError::Options(
            "--max-memory-mb must be positive".into(),
        ));
    }
    let workers = match args.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let config = CodeConfig {
        runtime: match args.runtime {
            Runtime::Component => RuntimeKind::Component,
            Runtime::Preview1 => RuntimeKind::Preview1,
        },
        ..CodeConfig::default()
    };
    let limits = &config.limits;
    let caps = Caps {
        max_run_timeout,
        max_memory_mb: args.max_memory_mb,
        stdout_bytes: limits.stdout_bytes,
        stderr_bytes: limits.stderr_bytes,
    };
    let pool = WorkerPool::start(WorkerCommand::current_exe()?, &config, workers)?;
    let batch_threads = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("cove-serve-batch-{i}"))
        .build()
        .map_err(|e| CodeError::ThreadPool(e.to_string()))?;
    let capacity = workers + args.queue;
    let app = Arc::new(App {
        pool,
        batch_threads,
        workers,
        slots: Arc::new(Semaphore::new(capacity)),
        capacity,
        caps,
        request_timeout,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Handlers wait for workers on blocking threads: one per admitted request.
        .max_blocking_threads(capacity.max(1))
        .build()
        .map_err(|source| ServeError::Io {
            what: "starting the async runtime".into(),
            source,
        })?;
    runtime.block_on(serve(app, &args.host, args.port, args.max_body_bytes))
}

async fn serve(app: Arc<App>, host: &str, port: u16, max_body: usize) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|source| ServeError::Io {
            what: format!("binding {host}:{port}"),
            source,
        })?;
    let addr: SocketAddr = listener.local_addr().map_err(|source| ServeError::Io {
        what: "reading the bound address".into(),
        source,
    })?;
    let mut stdout = std::io::stdout();
    // A closed stdout must not stop the server; the address is for whoever listens.
    let _ =
        writeln!(stdout, "cove serve: listening on http://{addr}").and_then(|()| stdout.flush());
    let router = Router::new()
        .route("/run_code", post(run_code))
        .route("/verify/math", post(verify_math))
        .route("/verify/code", post(verify_code))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|source| ServeError::Io {
            what: "serving".into(),
            source,
        })
}

/// A request that gets an error status: answered `{"status": "SandboxError", "message"}`.
struct ApiError {
    code: StatusCode,
    message: String,
}

/// An [`ApiError`] with `code`.
fn error(code: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        message: message.into(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"status": "SandboxError", "message": self.message});
        (self.code, axum::Json(body)).into_response()
    }
}

/// The body as `T`: 413 past the size limit, 400 for anything that is not a `T`.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        error(
            rejection.status(),
            format!("cannot read the request body: {}", rejection.body_text()),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("malformed request JSON: {e}"),
        )
    })
}

/// Admits a request that will use a worker: 503 when every worker and queue slot is taken.
fn admit(app: &App) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    app.slots.clone().try_acquire_owned().map_err(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server is busy: {} requests are running or queued; retry later",
                app.capacity
            ),
        )
    })
}

/// Runs `work` on a blocking thread within the request timeout: 504 when it takes
/// longer (the work itself still finishes, bounded by its own limits), 500 if it panicked.
async fn blocking<T: Send + 'static>(
    app: &App,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::time::timeout(app.request_timeout, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(join)) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {join}"),
        )),
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request took longer than the server's {} s timeout",
                app.request_timeout.as_secs_f64()
            ),
        )),
    }
}

async fn run_code(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: RunCodeRequest = parse(body)?;
    let limits = match sandbox_fusion::plan(&request, &app.caps) {
        Ok(Plan::Run { limits }) => limits,
        Ok(Plan::Refuse(response)) => return Ok(axum::Json(response).into_response()),
        Err(message) => return Err(error(StatusCode::BAD_REQUEST, message)),
    };
    let permit = admit(&app)?;
    let worker_app = app.clone();
    let ran = blocking(&app, move || {
        let _permit = permit;
        worker_app
            .pool
            .run(&request.code, request.stdin.as_bytes(), &limits)
    })
    .await?;
    let response = match ran {
        Ok(execution) => RunCodeResponse::from_execution(&execution),
        Err(message) => RunCodeResponse::without_run(Status::SandboxError, message),
    };
    Ok(axum::Json(response).into_response())
}

/// A `/verify/math` item.
#[derive(Deserialize)]
struct MathItem {
    gold: String,
    response: String,
    #[serde(default)]
    options: MathOptions,
}

/// A `/verify/code` item.
#[derive(Deserialize)]
struct CodeItem {
    response: String,
    tests: TestSuite,
}

/// Parses one item or a batch: an array must hold items, anything else must be one.
fn parse_items<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<(Vec<T>, bool), ApiError> {
    let value: Value = parse(body)?;
    let bad = |e: serde_json::Error| error(StatusCode::BAD_REQUEST, format!("bad item: {e}"));
    match value {
        Value::Array(items) => {
            let items = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    serde_json::from_value(item)
                        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad item {i}: {e}")))
                })
                .collect::<Result<Vec<T>, _>>()?;
            Ok((items, true))
        }
        one => Ok((vec![serde_json::from_value(one).map_err(bad)?], false)),
    }
}

/// `results` as the request asked: an array for a batch, the one object otherwise.
fn respond<T: serde::Serialize>(results: Vec<T>, batch: bool) -> Response {
    let body = if batch {
        json!(results)
    } else {
        json!(results.into_iter().next())
    };
    axum::Json(body).into_response()
}

async fn verify_math(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (items, batch) = parse_items::<MathItem>(body)?;
    let verdicts = blocking(&app, move || {
        items
            .par_iter()
            .map(|item| math::verify(&item.gold, &item.response, &item.options))
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(respond(verdicts, batch))
}

async fn verify_code(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (items, batch) = parse_items::<CodeItem>(body)?;
    let permit = admit(&app)?;
    let worker_app = app.clone();
    let reports = blocking(&app, move || {
        let _permit = permit;
        worker_app.batch_threads.install(|| {
            items
                .par_iter()
                .map(|item| worker_app.pool.verify(&item.response, &item.tests))
                .collect::<Vec<_>>()
        })
    })
    .await?;
    Ok(respond(reports, batch))
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let alive = app.pool.alive();
    let body = json!({
        "status": if alive > 0 { "ok" } else { "degraded" },
        "workers": app.workers,
        "workers_alive": alive,
        "capacity": app.capacity,
        "in_flight": app.capacity - app.slots.available_permits(),
    });
    axum::Json(body).into_response()
}
