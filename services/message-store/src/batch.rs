//! Batching: concurrent callers' jobs run together, one batch at a time.
//!
//! A batch is whatever is waiting when the previous one finishes, at most
//! `max` jobs: under light load a job runs alone at once (no timer, no
//! added latency); under heavy load each batch grows until the cost of one
//! run (a commit, a round trip) is shared by many callers. Group commit and
//! the batched membership check are built on it.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// The batches ended: the task that ran them stopped (the process is stopping, or a run panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the batch runner stopped")]
pub struct Stopped;

type Job<J, R> = (J, oneshot::Sender<R>);

/// Hands jobs to the task that runs them in batches; cheap to clone.
pub struct Batcher<J, R> {
    jobs: mpsc::Sender<Job<J, R>>,
}

impl<J, R> Clone for Batcher<J, R> {
    fn clone(&self) -> Self {
        Self { jobs: self.jobs.clone() }
    }
}

impl<J: Send + 'static, R: Send + 'static> Batcher<J, R> {
    /// Spawns the task that runs `run` on batches of at most `max` jobs, one
    /// batch at a time. `run` answers every job of its batch, in order
    /// (a job left without an answer gets [`Stopped`]). `queue` bounds the jobs
    /// waiting: past it, [`Batcher::submit`] waits (backpressure, not memory).
    pub fn spawn<F, Fut>(max: usize, queue: usize, mut run: F) -> Self
    where
        F: FnMut(Vec<J>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        assert!(max > 0, "a batch holds at least one job");
        let (jobs, mut waiting) = mpsc::channel::<Job<J, R>>(queue.max(1));
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            loop {
                // The first job wakes the runner; callers woken by the same
                // event (one answer fanned out to many) are runnable right now:
                // let them queue up before the batch is taken.
                if waiting.recv_many(&mut batch, max).await == 0 {
                    break;
                }
                if batch.len() < max {
                    tokio::task::yield_now().await;
                    while batch.len() < max
                        && let Ok(job) = waiting.try_recv()
                    {
                        batch.push(job);
                    }
                }
                let (inputs, answers): (Vec<J>, Vec<oneshot::Sender<R>>) = batch.drain(..).unzip();
                let results = run(inputs).await;
                if results.len() != answers.len() {
                    tracing::error!(jobs = answers.len(), answers = results.len(), "a batch left jobs unanswered");
                }
                for (answer, result) in answers.into_iter().zip(results) {
                    // A caller that went away (its request was cancelled) needs no answer.
                    let _ = answer.send(result);
                }
            }
        });
        Self { jobs }
    }

    /// Runs `job` in the next batch and waits for its result.
    pub async fn submit(&self, job: J) -> Result<R, Stopped> {
        let (answer, result) = oneshot::channel();
        self.jobs.send((job, answer)).await.map_err(|_| Stopped)?;
        result.await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Seen = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A batcher that doubles numbers and records the batches it ran.
    fn doubling(max: usize, pause: std::time::Duration) -> (Batcher<u32, u32>, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let batcher = Batcher::spawn(max, 1024, move |jobs: Vec<u32>| {
            record.lock().unwrap().push(jobs.clone());
            async move {
                tokio::time::sleep(pause).await;
                jobs.into_iter().map(|n| n * 2).collect()
            }
        });
        (batcher, seen)
    }

    #[tokio::test]
    async fn a_lone_job_runs_at_once_in_a_batch_of_its_own() {
        let (batcher, seen) = doubling(8, std::time::Duration::ZERO);
        assert_eq!(batcher.submit(21).await, Ok(42));
        assert_eq!(*seen.lock().unwrap(), vec![vec![21]]);
    }

    #[tokio::test]
    async fn concurrent_jobs_share_batches_never_larger_than_max_and_each_gets_its_own_answer() {
        let (batcher, seen) = doubling(16, std::time::Duration::from_millis(5));
        let jobs = (0..100).map(|n| {
            let batcher = batcher.clone();
            tokio::spawn(async move { (n, batcher.submit(n).await) })
        });
        for job in futures::future::join_all(jobs).await {
            let (n, answer) = job.unwrap();
            assert_eq!(answer, Ok(n * 2));
        }
        let batches = seen.lock().unwrap();
        assert!(batches.iter().all(|batch| (1..=16).contains(&batch.len())), "{batches:?}");
        assert!(batches.len() < 100, "jobs waiting while a batch ran were taken together: {} batches", batches.len());
        let mut all: Vec<u32> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>(), "every job ran exactly once");
    }

    #[tokio::test]
    async fn jobs_from_one_caller_run_in_the_order_submitted() {
        let (batcher, seen) = doubling(4, std::time::Duration::from_millis(1));
        for n in 0..10 {
            batcher.submit(n).await.unwrap();
        }
        let order: Vec<u32> = seen.lock().unwrap().iter().flatten().copied().collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_run_that_panics_fails_its_callers_instead_of_hanging_them() {
        let batcher: Batcher<u32, u32> = Batcher::spawn(4, 16, |_jobs: Vec<u32>| async { panic!("a bug in a run") });
        assert_eq!(batcher.submit(1).await, Err(Stopped));
        assert_eq!(batcher.submit(2).await, Err(Stopped), "and every caller after them");
    }

    #[tokio::test]
    async fn a_run_that_answers_too_few_fails_only_the_unanswered() {
        let batcher: Batcher<u32, u32> =
            Batcher::spawn(4, 16, |jobs: Vec<u32>| async move { jobs.into_iter().filter(|n| *n != 2).collect() });
        // One job per batch here: the missing answer is the job's own.
        assert_eq!(batcher.submit(1).await, Ok(1));
        assert_eq!(batcher.submit(2).await, Err(Stopped));
        assert_eq!(batcher.submit(3).await, Ok(3));
    }
}
