// The Redis layer against the real Redis on 127.0.0.1:6379 (skipped when unreachable): URL
// parsing, connection, shared SII state (token lock, breaker, rate limit) and the job queue.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "dte/redis.hpp"

using namespace dte::redis;

namespace {

std::string redis_url() {
  const char* env = std::getenv("DTE_TEST_REDIS_URL");
  return env ? env : "redis://127.0.0.1:6379/0";
}

std::string unique_prefix(const char* name) {
  return std::string("dtetest:") + name + ":" + std::to_string(::getpid()) + ":" + new_job_id().substr(0, 8);
}

bool reachable() {
  Options o;
  o.connect_attempts = 1;
  o.connect_timeout_s = 0.5;
  Connection c(Url::parse(redis_url()), o);
  return c.ping();
}

#define REQUIRE_REDIS() \
  if (!reachable()) GTEST_SKIP() << "Redis not reachable at " << redis_url()

// Deletes every key of the prefix when the test ends.
struct Cleanup {
  std::string prefix;
  ~Cleanup() {
    try {
      QueueConfig c;
      c.prefix = prefix;
      JobQueue(Url::parse(redis_url()), c).purge();
    } catch (...) {
    }
  }
};

}  // namespace

TEST(RedisUrl, ParsesHostPortDbAndPassword) {
  Url u = Url::parse("redis://:s3cret@10.0.0.5:6380/3");
  EXPECT_EQ(u.host, "10.0.0.5");
  EXPECT_EQ(u.port, 6380);
  EXPECT_EQ(u.db, 3);
  EXPECT_EQ(u.password, "s3cret");
  EXPECT_EQ(u.str(), "redis://10.0.0.5:6380/3");  // never shows the password
  Url d = Url::parse("redis://localhost");
  EXPECT_EQ(d.port, 6379);
  EXPECT_EQ(d.db, 0);
  Url a = Url::parse("redis://user:pw@h:1/0");
  EXPECT_EQ(a.username, "user");
  EXPECT_EQ(a.password, "pw");
}

TEST(RedisUrl, RejectsBadUrls) {
  for (const char* bad : {"http://x", "redis://h:port/0", "redis://h:6379/x", "redis://h:70000"}) {
    try {
      Url::parse(bad);
      FAIL() << bad;
    } catch (const RedisError& e) {
      EXPECT_EQ(e.code(), "redis.bad_url") << bad;
    }
  }
}

TEST(RedisConnection, UnreachableServerIsConnectError) {
  Options o;
  o.connect_attempts = 1;
  o.connect_timeout_s = 0.5;
  Connection c(Url::parse("redis://127.0.0.1:1/0"), o);
  EXPECT_FALSE(c.ping());
  try {
    c.command({"PING"});
    FAIL();
  } catch (const RedisError& e) {
    EXPECT_EQ(e.code(), "redis.connect");
  }
}

TEST(RedisConnection, CommandsAndErrorReplies) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("conn");
  Cleanup cleanup{p};
  Connection c(Url::parse(redis_url()));
  EXPECT_EQ(c.command({"SET", p + ":k", std::string("a\0b", 3)}).str, "OK");
  EXPECT_EQ(c.command({"GET", p + ":k"}).str, std::string("a\0b", 3));  // binary safe
  EXPECT_TRUE(c.command({"GET", p + ":missing"}).is_nil());
  EXPECT_EQ(c.command({"INCRBY", p + ":n", "5"}).integer, 5);
  Value err = c.command_raw({"INCR", p + ":k"});
  EXPECT_EQ(err.type, Value::Type::kError);
  EXPECT_THROW(c.command({"INCR", p + ":k"}), RedisError);
  EXPECT_TRUE(c.ping());  // still usable after an error reply
}

TEST(RedisSharedState, TokenRenewalLockHasOneHolder) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("tok");
  Cleanup cleanup{p};
  SharedState a(Url::parse(redis_url()), p), b(Url::parse(redis_url()), p);
  EXPECT_FALSE(a.token_get("k").has_value());
  EXPECT_TRUE(a.token_try_lock("k", "A", 10));
  EXPECT_FALSE(b.token_try_lock("k", "B", 10));
  b.token_unlock("k", "B");  // not the holder: no effect
  EXPECT_FALSE(b.token_try_lock("k", "B", 10));
  a.token_put("k", "TOKEN1", 60);
  a.token_unlock("k", "A");
  EXPECT_EQ(b.token_get("k").value_or(""), "TOKEN1");
  b.token_drop("k", "OTHER");  // someone already replaced it: kept
  EXPECT_EQ(a.token_get("k").value_or(""), "TOKEN1");
  b.token_drop("k", "TOKEN1");
  EXPECT_FALSE(a.token_get("k").has_value());
  EXPECT_TRUE(b.token_try_lock("k", "B", 10));
  EXPECT_EQ(a.errors(), 0);
}

TEST(RedisSharedState, BreakerIsSharedBetweenProcesses) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("brk");
  Cleanup cleanup{p};
  SharedState a(Url::parse(redis_url()), p), b(Url::parse(redis_url()), p);
  dte::sii::BreakerPolicy pol;
  pol.failure_threshold = 3;
  pol.open_seconds = 0.3;
  EXPECT_TRUE(a.breaker_allow("upload", pol));
  a.breaker_record("upload", false, pol);
  b.breaker_record("upload", false, pol);
  EXPECT_EQ(a.breaker_state("upload", pol), dte::sii::BreakerState::kClosed);
  b.breaker_record("upload", false, pol);  // third failure, from the other sharer
  EXPECT_EQ(a.breaker_state("upload", pol), dte::sii::BreakerState::kOpen);
  EXPECT_FALSE(a.breaker_allow("upload", pol));
  EXPECT_TRUE(a.breaker_allow("status", pol));  // per endpoint
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_TRUE(b.breaker_allow("upload", pol));   // the one half-open trial
  EXPECT_FALSE(a.breaker_allow("upload", pol));  // only one at a time
  b.breaker_record("upload", true, pol);
  EXPECT_EQ(a.breaker_state("upload", pol), dte::sii::BreakerState::kClosed);
  EXPECT_TRUE(a.breaker_allow("upload", pol));
}

TEST(RedisSharedState, TokenBucketLimitsAllSharers) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("rate");
  Cleanup cleanup{p};
  SharedState a(Url::parse(redis_url()), p), b(Url::parse(redis_url()), p);
  // 1 per second, burst 3: three immediate tokens across both sharers, then a wait.
  int taken = 0;
  for (int i = 0; i < 3; ++i) taken += (i % 2 ? a : b).rate_acquire("sii", 1.0, 3.0) == 0 ? 1 : 0;
  EXPECT_EQ(taken, 3);
  double wait = a.rate_acquire("sii", 1.0, 3.0);
  EXPECT_GT(wait, 0.0);
  EXPECT_LE(wait, 1.0);
}

TEST(RedisSharedState, UnreachableStoreDegradesToLocal) {
  Options o;
  o.connect_attempts = 1;
  o.connect_timeout_s = 0.2;
  SharedState s(Url::parse("redis://127.0.0.1:1/0"), "x", o);
  EXPECT_FALSE(s.token_get("k").has_value());
  EXPECT_TRUE(s.token_try_lock("k", "A", 1));
  EXPECT_TRUE(s.breaker_allow("upload", {}));
  EXPECT_EQ(s.rate_acquire("b", 1, 1), 0.0);
  EXPECT_GE(s.errors(), 4);
}

TEST(RedisQueue, EnqueueIsIdempotentAndCompletionHappensOnce) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("q1");
  Cleanup cleanup{p};
  QueueConfig cfg;
  cfg.prefix = p;
  JobQueue q(Url::parse(redis_url()), cfg);
  q.ensure_group();
  q.ensure_group();  // idempotent
  std::string id = "job-1";
  EXPECT_TRUE(q.enqueue(id, "send", "{\"x\":1}"));
  EXPECT_FALSE(q.enqueue(id, "send", "{\"x\":1}"));  // same id: one job
  std::string gen;
  EXPECT_TRUE(q.enqueue(gen, "poll", "{}"));
  EXPECT_EQ(gen.size(), 36u);
  auto jobs = q.fetch("w1", 10, 100);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id, "job-1");
  EXPECT_EQ(jobs[0].payload, "{\"x\":1}");
  EXPECT_GT(jobs[0].enqueued_ms, 0);
  auto st = q.stats();
  EXPECT_EQ(st.depth, 2);
  EXPECT_EQ(st.pending, 2);
  EXPECT_EQ(st.pending_by_consumer["w1"], 2);
  ASSERT_EQ(q.begin(jobs[0], "w1"), Begin::kRun);
  EXPECT_EQ(jobs[0].attempt, 1);
  EXPECT_TRUE(q.complete(jobs[0], "w1", "{\"ok\":true}"));
  EXPECT_FALSE(q.complete(jobs[0], "w2", "{\"ok\":false}"));  // second completion does not count
  EXPECT_EQ(q.result("job-1").value_or(""), "{\"ok\":true}");
  EXPECT_FALSE(q.enqueue(id, "send", "{}"));  // finished: never enqueued again
  auto res = q.results("0", 10);
  ASSERT_EQ(res.size(), 1u);
  EXPECT_EQ(res[0].second["id"], "job-1");
  EXPECT_EQ(res[0].second["status"], "ok");
  st = q.stats();
  EXPECT_EQ(st.depth, 1);
  EXPECT_EQ(st.pending, 1);
}

TEST(RedisQueue, RetriesWithBackoffThenDeadLetter) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("q2");
  Cleanup cleanup{p};
  QueueConfig cfg;
  cfg.prefix = p;
  cfg.max_attempts = 3;
  cfg.retry_base_s = 0.05;
  cfg.retry_max_s = 0.05;
  cfg.retry_jitter = 0;
  JobQueue q(Url::parse(redis_url()), cfg);
  q.ensure_group();
  std::string id = "flaky";
  ASSERT_TRUE(q.enqueue(id, "send", "{}"));
  std::vector<std::string> outcomes;
  for (int round = 0; round < 50 && outcomes.size() < 3; ++round) {
    for (auto& j : q.fetch("w", 1, 50)) {
      ASSERT_EQ(q.begin(j, "w"), Begin::kRun);
      EXPECT_EQ(j.attempt, static_cast<int>(outcomes.size()) + 1);
      outcomes.push_back(q.fail(j, "w", "{\"code\":\"x\"}", true));
    }
  }
  EXPECT_EQ(outcomes, (std::vector<std::string>{"retry", "retry", "dead"}));
  auto dead = q.dead_letters(10);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].second["id"], "flaky");
  EXPECT_EQ(dead[0].second["attempts"], "3");
  auto st = q.stats();
  EXPECT_EQ(st.depth, 0);
  EXPECT_EQ(st.delayed, 0);
  EXPECT_EQ(st.dead, 1);
}

TEST(RedisQueue, NonRetryableFailureGoesStraightToDeadLetters) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("q3");
  Cleanup cleanup{p};
  QueueConfig cfg;
  cfg.prefix = p;
  JobQueue q(Url::parse(redis_url()), cfg);
  std::string id;
  ASSERT_TRUE(q.enqueue(id, "send", "{}"));
  auto jobs = q.fetch("w", 1, 100);  // creates the group on first use
  if (jobs.empty()) jobs = q.fetch("w", 1, 100);
  ASSERT_EQ(jobs.size(), 1u);
  ASSERT_EQ(q.begin(jobs[0], "w"), Begin::kRun);
  EXPECT_EQ(q.fail(jobs[0], "w", "{}", false), "dead");
  EXPECT_EQ(q.stats().dead, 1);
}

TEST(RedisQueue, StalledConsumerJobsAreTakenOver) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("q4");
  Cleanup cleanup{p};
  QueueConfig cfg;
  cfg.prefix = p;
  cfg.claim_idle_ms = 200;
  cfg.max_attempts = 2;
  JobQueue q(Url::parse(redis_url()), cfg);
  q.ensure_group();
  std::string id = "orphan";
  ASSERT_TRUE(q.enqueue(id, "send", "{}"));
  auto jobs = q.fetch("dead-worker", 1, 100);
  ASSERT_EQ(jobs.size(), 1u);
  ASSERT_EQ(q.begin(jobs[0], "dead-worker"), Begin::kRun);
  // The holder stops (no ack, no touch). While its lease is alive nobody else runs it...
  EXPECT_TRUE(q.fetch("survivor", 1, 0).empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto taken = q.fetch("survivor", 1, 0);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_TRUE(taken[0].reclaimed);
  ASSERT_EQ(q.begin(taken[0], "survivor"), Begin::kRun);
  EXPECT_EQ(taken[0].attempt, 2);  // the crashed attempt counts
  EXPECT_TRUE(q.complete(taken[0], "survivor", "{}"));
  // The stalled worker wakes up and completes too late: it does not count.
  EXPECT_FALSE(q.complete(jobs[0], "dead-worker", "{}"));
  EXPECT_EQ(q.stats().depth, 0);
}

TEST(RedisQueue, TooManyCrashesMakeADeadLetter) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("q5");
  Cleanup cleanup{p};
  QueueConfig cfg;
  cfg.prefix = p;
  cfg.claim_idle_ms = 100;
  cfg.max_attempts = 1;
  JobQueue q(Url::parse(redis_url()), cfg);
  q.ensure_group();
  std::string id = "poison";
  ASSERT_TRUE(q.enqueue(id, "send", "{}"));
  auto jobs = q.fetch("a", 1, 100);
  ASSERT_EQ(q.begin(jobs.at(0), "a"), Begin::kRun);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto again = q.fetch("b", 1, 0);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(q.begin(again[0], "b"), Begin::kDead);
  EXPECT_EQ(q.stats().dead, 1);
  EXPECT_EQ(q.stats().depth, 0);
}

TEST(RedisQueue, ConcurrentConsumersNeverRunAJobTwice) {
  REQUIRE_REDIS();
  std::string p = unique_prefix("q6");
  Cleanup cleanup{p};
  QueueConfig cfg;
  cfg.prefix = p;
  JobQueue producer(Url::parse(redis_url()), cfg);
  producer.ensure_group();
  constexpr int kJobs = 200;
  for (int i = 0; i < kJobs; ++i) {
    std::string id = "j" + std::to_string(i);
    ASSERT_TRUE(producer.enqueue(id, "send", "{}"));
  }
  std::atomic<int> runs{0}, completions{0};
  auto consume = [&](std::string name) {
    JobQueue q(Url::parse(redis_url()), cfg);
    for (int idle = 0; idle < 3;) {
      auto jobs = q.fetch(name, 5, 50);
      if (jobs.empty()) {
        ++idle;
        continue;
      }
      for (auto& j : jobs)
        if (q.begin(j, name) == Begin::kRun) {
          ++runs;
          if (q.complete(j, name, "{}")) ++completions;
        }
    }
  };
  std::thread t1(consume, "c1"), t2(consume, "c2"), t3(consume, "c3");
  t1.join();
  t2.join();
  t3.join();
  EXPECT_EQ(runs.load(), kJobs);
  EXPECT_EQ(completions.load(), kJobs);
  EXPECT_EQ(producer.stats().depth, 0);
}
