// Redis for scale-out (hiredis): a connection with timeouts and reconnect, the SII client's
// shared state (token cache with a renewal lock, circuit breakers, a token-bucket rate limit) and
// a job queue on Redis Streams with consumer groups.
//
// Errors: RedisError with code "redis.bad_url" (unparsable URL), "redis.connect" (cannot reach
// the server), "redis.io" (the connection broke or timed out mid-command; the next command
// reconnects), "redis.reply" (the server answered an error), "redis.protocol" (unexpected reply
// shape).
//
// Queue keys (prefix P, default "dte"):
//   P:jobs            stream of jobs waiting or in progress (entries are deleted once finished)
//   P:delayed         sorted set of jobs waiting for a retry (score = due time, ms)
//   P:dead            stream of jobs that failed for good (dead letters)
//   P:results         stream of outcomes (capped), what `dte worker` also reports by webhook
//   P:attempts        hash job id -> attempts started (a crash counts as an attempt)
//   P:result:<id>     outcome of a finished job, SET NX: the idempotency key. A job id whose
//                     result exists is never run again, and only the first completion counts.
//   P:enq:<id>        enqueue marker: the same job id enqueued twice is one job
//   P:lock:<id>       processing lease of the worker running the job (PX = claim_idle_ms)
#pragma once
#include <hiredis/hiredis.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dte/errors.hpp"
#include "dte/handles.hpp"
#include "dte/sii_client.hpp"

namespace dte::redis {

class RedisError : public DteError {
 public:
  using DteError::DteError;
};

// redis://[[user]:password@]host[:port][/db]
struct Url {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string username;
  std::string password;
  static Url parse(std::string_view url);
  std::string str() const;  // without the password
};

struct Options {
  double connect_timeout_s = 2.0;
  double command_timeout_s = 5.0;  // blocking reads add their own BLOCK time to this
  int connect_attempts = 3;        // tries per (re)connection
  double reconnect_delay_s = 0.1;  // doubled after each failed try
};

// A reply, copied out of hiredis' redisReply.
struct Value {
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  long long integer = 0;
  std::string str;
  std::vector<Value> elements;

  bool is_nil() const noexcept { return type == Type::kNil; }
  bool is_array() const noexcept { return type == Type::kArray; }
  // Integer replies, and strings holding an integer; throws "redis.protocol" otherwise.
  long long as_int() const;
};

using ContextPtr = std::unique_ptr<redisContext, CDeleter<redisFree>>;
using ReplyPtr = std::unique_ptr<redisReply, CDeleter<freeReplyObject>>;

// One connection. Thread-safe (commands are serialised). Connects lazily and again after an
// I/O error; a command that failed with "redis.io" is not repeated automatically (it may have
// been applied), callers that can repeat it do.
class Connection {
 public:
  explicit Connection(Url url, Options options = {});
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs a command; an error reply throws RedisError "redis.reply" with the server's message.
  Value command(const std::vector<std::string>& args);
  // Same, but an error reply comes back as a Value of type kError.
  Value command_raw(const std::vector<std::string>& args, double extra_timeout_s = 0);
  // EVAL of a Lua script with its keys and arguments.
  Value eval(std::string_view script, const std::vector<std::string>& keys,
             const std::vector<std::string>& args);
  bool ping() noexcept;
  const Url& url() const noexcept { return url_; }

 private:
  void connect_locked();
  Url url_;
  Options options_;
  std::mutex mu_;
  ContextPtr ctx_;
};

// The SII client's SharedState on Redis. Keys: P:token:<key>, P:tokenlock:<key>,
// P:breaker:<endpoint>, P:rate:<bucket>. Times come from the Redis server's clock, so machines
// need not agree on theirs. Never throws (see SharedState); failures are counted in errors().
class SharedState final : public sii::SharedState {
 public:
  SharedState(Url url, std::string prefix = "dte", Options options = {});
  std::optional<std::string> token_get(const std::string& key) override;
  void token_put(const std::string& key, const std::string& token, double ttl_s) override;
  void token_drop(const std::string& key, const std::string& stale) override;
  bool token_try_lock(const std::string& key, const std::string& owner, double lease_s) override;
  void token_unlock(const std::string& key, const std::string& owner) override;
  bool breaker_allow(const std::string& endpoint, const sii::BreakerPolicy& p) override;
  void breaker_record(const std::string& endpoint, bool success, const sii::BreakerPolicy& p) override;
  sii::BreakerState breaker_state(const std::string& endpoint, const sii::BreakerPolicy& p) override;
  double rate_acquire(const std::string& bucket, double rate_per_s, double burst) override;

  long long errors() const noexcept { return errors_; }
  const std::string& prefix() const noexcept { return prefix_; }

 private:
  template <typename F, typename R>
  R guarded(F&& fn, R fallback) noexcept;
  Connection conn_;
  std::string prefix_;
  std::atomic<long long> errors_{0};
};

// One SharedState per (URL, prefix) in this process, shared by every client.
std::shared_ptr<SharedState> shared_state(std::string_view url, std::string_view prefix = "dte");

// ------------------------------------------------------------------------------------ jobs

struct QueueConfig {
  std::string prefix = "dte";
  std::string group = "dte-workers";
  int max_attempts = 5;               // attempts started (crashes included) before dead letter
  double retry_base_s = 1.0;          // backoff before the 2nd attempt, doubled after each
  double retry_max_s = 60.0;
  double retry_jitter = 0.3;          // share of the delay randomised
  long long claim_idle_ms = 30000;    // a job pending this long without progress is taken over
  long long result_ttl_s = 7 * 86400; // how long idempotency keys and results are kept
  long long results_maxlen = 100000;  // approximate cap of the results stream
};

struct Job {
  std::string entry_id;  // stream entry id (changes when a job is retried)
  std::string id;        // job id = idempotency key
  std::string kind;      // "send" | "poll" | "inbox" | anything a worker knows
  std::string payload;   // JSON text
  long long enqueued_ms = 0;
  int attempt = 0;       // set by begin()
  bool reclaimed = false;  // taken over from a consumer that stopped making progress
};

enum class Begin { kRun, kAlreadyDone, kBusy, kDead };

struct QueueStats {
  long long depth = 0;      // jobs in the stream (waiting + in progress)
  long long pending = 0;    // delivered, not yet acknowledged
  long long waiting = 0;    // not yet delivered to any consumer
  long long delayed = 0;    // waiting for a retry
  long long dead = 0;       // dead letters
  long long results = 0;    // entries in the results stream
  long long consumers = 0;  // consumers known to the group
  std::map<std::string, long long> pending_by_consumer;
};

class JobQueue {
 public:
  JobQueue(Url url, QueueConfig config = {}, Options options = {});
  const QueueConfig& config() const noexcept { return cfg_; }

  // Creates the stream and the consumer group if missing (idempotent).
  void ensure_group();
  // Adds a job; the id is generated when empty. Returns false (and adds nothing) when a job
  // with this id was already enqueued or finished.
  bool enqueue(std::string& id, const std::string& kind, const std::string& payload);
  // Moves due retries into the stream, takes over jobs idle longer than claim_idle_ms, then
  // reads new ones (waiting up to block_ms, when > 0, if there is nothing). At most `count` jobs.
  std::vector<Job> fetch(const std::string& consumer, int count, long long block_ms);
  // Before running a job: kAlreadyDone (acknowledged, skip), kBusy (another live worker holds
  // it), kDead (too many attempts: moved to the dead letters), or kRun with job.attempt set.
  Begin begin(Job& job, const std::string& consumer);
  // Keeps a long job ours: renews the lease and resets its idle time.
  void touch(const Job& job, const std::string& consumer);
  // Records the outcome once (SET NX on the result key), publishes it to the results stream,
  // acknowledges. Returns false when the job had already been completed by someone else.
  bool complete(const Job& job, const std::string& consumer, const std::string& result_json);
  // A failed attempt: retried after a backoff, or dead-lettered when not retryable or out of
  // attempts. Returns "retry" or "dead".
  std::string fail(const Job& job, const std::string& consumer, const std::string& error_json,
                   bool retryable);
  // The stored outcome of a finished job, if any.
  std::optional<std::string> result(const std::string& id);
  // Results stream entries after `after_id` ("0" = from the start): (entry id, fields),
  // waiting up to block_ms (when > 0) for the first one.
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> results(
      const std::string& after_id, int count, long long block_ms = -1);
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> dead_letters(int count);
  QueueStats stats();
  // Deletes every key of this queue's prefix (tests, `dte queue purge`). Returns keys deleted.
  long long purge();

 private:
  std::vector<Job> parse_entries(const Value& entries, bool reclaimed);
  double retry_delay_s(int attempt);
  QueueConfig cfg_;
  std::string k_jobs_, k_delayed_, k_dead_, k_results_, k_attempts_;
  Connection conn_;   // short commands
  Connection block_;  // blocking reads, so they never hold up acknowledgements
};

// A fresh random id (UUID v4 text).
std::string new_job_id();

}  // namespace dte::redis
