// Jobs on Redis Streams: consumer group delivery, take-over of stalled jobs (XAUTOCLAIM),
// retries with backoff through a delayed set, dead letters, and at-most-once completion through
// a SET NX result key. Every state change of one job is one Lua script, so a crash between two
// steps never leaves a job half moved.
#include <openssl/rand.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "dte/redis.hpp"

namespace dte::redis {

namespace {

constexpr const char* kNowMs = R"(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
)";

// KEYS: enq marker, result key, jobs. ARGV: id, kind, payload, ttl_s.
constexpr const char* kEnqueue = R"(
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[4]) then return 0 end
redis.call('XADD', KEYS[3], '*', 'id', ARGV[1], 'kind', ARGV[2], 'payload', ARGV[3],
           'enqueued_ms', tostring(now_ms()))
return 1)";

// KEYS: delayed, jobs. ARGV: limit.
constexpr const char* kPromote = R"(
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for _, m in ipairs(due) do
  if redis.call('ZREM', KEYS[1], m) == 1 then
    local j = cjson.decode(m)
    redis.call('XADD', KEYS[2], '*', 'id', j.id, 'kind', j.kind, 'payload', j.payload,
               'enqueued_ms', j.enqueued_ms)
    moved = moved + 1
  end
end
return moved)";

// KEYS: result, lock, attempts, jobs, dead.
// ARGV: id, consumer, lease_ms, max_attempts, entry, group, kind, payload, enqueued_ms.
constexpr const char* kBegin = R"(
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('XACK', KEYS[4], ARGV[6], ARGV[5])
  redis.call('XDEL', KEYS[4], ARGV[5])
  return {'done', 0}
end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {'busy', 0} end
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if n > tonumber(ARGV[4]) then
  redis.call('XADD', KEYS[5], '*', 'id', ARGV[1], 'kind', ARGV[7], 'payload', ARGV[8],
             'enqueued_ms', ARGV[9], 'attempts', tostring(n - 1), 'failed_ms', tostring(now_ms()),
             'error', cjson.encode({code = 'queue.max_attempts',
                                    message = 'the job was started ' .. (n - 1) .. ' times without finishing'}))
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('DEL', KEYS[2])
  redis.call('XACK', KEYS[4], ARGV[6], ARGV[5])
  redis.call('XDEL', KEYS[4], ARGV[5])
  return {'dead', n - 1}
end
return {'run', n})";

// KEYS: lock, jobs. ARGV: consumer, lease_ms, group, entry.
constexpr const char* kTouch = R"(
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[1], 0, ARGV[4], 'JUSTID')
return 1)";

// KEYS: result, lock, attempts, jobs, results.
// ARGV: id, consumer, result, ttl_s, entry, group, kind, attempt, maxlen, enqueued_ms.
constexpr const char* kComplete = R"(
local first = redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[4])
if first then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[9], '*', 'id', ARGV[1], 'kind', ARGV[7],
             'status', 'ok', 'result', ARGV[3], 'consumer', ARGV[2], 'attempts', ARGV[8],
             'enqueued_ms', ARGV[10], 'done_ms', tostring(now_ms()))
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
redis.call('XACK', KEYS[4], ARGV[6], ARGV[5])
redis.call('XDEL', KEYS[4], ARGV[5])
if first then return 1 end
return 0)";

// KEYS: lock, attempts, jobs, dead, delayed, results.
// ARGV: id, consumer, error, retryable, max_attempts, entry, group, kind, payload, enqueued_ms,
//       delay_ms, maxlen.
constexpr const char* kFail = R"(
local n = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local outcome
if ARGV[4] == '1' and n < tonumber(ARGV[5]) then
  redis.call('ZADD', KEYS[5], now_ms() + tonumber(ARGV[11]),
             cjson.encode({id = ARGV[1], kind = ARGV[8], payload = ARGV[9], enqueued_ms = ARGV[10],
                           n = n}))
  outcome = 'retry'
else
  local now = tostring(now_ms())
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[1], 'kind', ARGV[8], 'payload', ARGV[9],
             'enqueued_ms', ARGV[10], 'attempts', tostring(n), 'failed_ms', now, 'error', ARGV[3])
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[12], '*', 'id', ARGV[1], 'kind', ARGV[8],
             'status', 'dead', 'error', ARGV[3], 'consumer', ARGV[2], 'attempts', tostring(n),
             'enqueued_ms', ARGV[10], 'done_ms', now)
  redis.call('HDEL', KEYS[2], ARGV[1])
  outcome = 'dead'
end
if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DEL', KEYS[1]) end
redis.call('XACK', KEYS[3], ARGV[7], ARGV[6])
redis.call('XDEL', KEYS[3], ARGV[6])
return outcome)";

std::string script(const char* body) { return std::string(kNowMs) + body; }

bool is_nogroup(const RedisError& e) { return std::string_view(e.what()).find("NOGROUP") != std::string_view::npos; }

std::map<std::string, std::string> fields_of(const Value& v) {
  std::map<std::string, std::string> out;
  for (std::size_t i = 0; i + 1 < v.elements.size(); i += 2) out[v.elements[i].str] = v.elements[i + 1].str;
  return out;
}

std::vector<std::pair<std::string, std::map<std::string, std::string>>> entries_of(const Value& v) {
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> out;
  for (const auto& e : v.elements)
    if (e.is_array() && e.elements.size() == 2 && e.elements[1].is_array())
      out.emplace_back(e.elements[0].str, fields_of(e.elements[1]));
  return out;
}

std::string glob_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string new_job_id() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    std::random_device rd;
    for (auto& x : b) x = static_cast<unsigned char>(rd());
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += hex[b[i] >> 4];
    out += hex[b[i] & 15];
  }
  return out;
}

JobQueue::JobQueue(Url url, QueueConfig config, Options options)
    : cfg_(std::move(config)),
      k_jobs_(cfg_.prefix + ":jobs"),
      k_delayed_(cfg_.prefix + ":delayed"),
      k_dead_(cfg_.prefix + ":dead"),
      k_results_(cfg_.prefix + ":results"),
      k_attempts_(cfg_.prefix + ":attempts"),
      conn_(url, options),
      block_(url, options) {
  if (cfg_.prefix.empty()) throw RedisError("redis.bad_config", "queue prefix must not be empty");
  if (cfg_.group.empty()) throw RedisError("redis.bad_config", "consumer group must not be empty");
  if (cfg_.max_attempts < 1) throw RedisError("redis.bad_config", "max_attempts must be >= 1");
  if (cfg_.claim_idle_ms < 1) throw RedisError("redis.bad_config", "claim_idle_ms must be >= 1");
}

void JobQueue::ensure_group() {
  Value v = conn_.command_raw({"XGROUP", "CREATE", k_jobs_, cfg_.group, "0", "MKSTREAM"});
  if (v.type == Value::Type::kError && v.str.rfind("BUSYGROUP", 0) != 0)
    throw RedisError("redis.reply", "XGROUP CREATE: " + v.str);
}

bool JobQueue::enqueue(std::string& id, const std::string& kind, const std::string& payload) {
  if (kind.empty()) throw RedisError("redis.bad_job", "a job needs a kind");
  if (id.empty()) id = new_job_id();
  Value v = conn_.eval(script(kEnqueue),
                       {cfg_.prefix + ":enq:" + id, cfg_.prefix + ":result:" + id, k_jobs_},
                       {id, kind, payload, std::to_string(cfg_.result_ttl_s)});
  return v.integer == 1;
}

std::vector<Job> JobQueue::parse_entries(const Value& entries, bool reclaimed) {
  std::vector<Job> out;
  for (const auto& [entry, f] : entries_of(entries)) {
    Job j;
    j.entry_id = entry;
    auto get = [&](const char* k) {
      auto it = f.find(k);
      return it == f.end() ? std::string() : it->second;
    };
    j.id = get("id");
    j.kind = get("kind");
    j.payload = get("payload");
    try {
      j.enqueued_ms = std::stoll(get("enqueued_ms"));
    } catch (const std::exception&) {
      j.enqueued_ms = 0;
    }
    j.reclaimed = reclaimed;
    out.push_back(std::move(j));
  }
  return out;
}

std::vector<Job> JobQueue::fetch(const std::string& consumer, int count, long long block_ms) {
  if (count < 1) count = 1;
  conn_.eval(script(kPromote), {k_delayed_, k_jobs_}, {std::to_string(std::max(count, 100))});
  std::vector<Job> out;
  for (int round = 0; round < 2; ++round) {
    try {
      Value c = conn_.command({"XAUTOCLAIM", k_jobs_, cfg_.group, consumer, std::to_string(cfg_.claim_idle_ms),
                               "0-0", "COUNT", std::to_string(count)});
      if (c.is_array() && c.elements.size() >= 2) out = parse_entries(c.elements[1], true);
      break;
    } catch (const RedisError& e) {
      if (!is_nogroup(e) || round == 1) throw;
      ensure_group();
    }
  }
  int missing = count - static_cast<int>(out.size());
  if (missing <= 0) return out;
  std::vector<std::string> cmd{"XREADGROUP", "GROUP", cfg_.group, consumer, "COUNT", std::to_string(missing)};
  bool blocking = out.empty() && block_ms > 0;  // BLOCK 0 would wait forever
  if (blocking) {
    cmd.push_back("BLOCK");
    cmd.push_back(std::to_string(block_ms));
  }
  cmd.insert(cmd.end(), {"STREAMS", k_jobs_, ">"});
  Value r = block_.command_raw(cmd, blocking ? static_cast<double>(block_ms) / 1000.0 : 0);
  if (r.type == Value::Type::kError) {
    if (r.str.rfind("NOGROUP", 0) == 0) {
      ensure_group();
      return out;
    }
    throw RedisError("redis.reply", "XREADGROUP: " + r.str);
  }
  if (r.is_array())
    for (const auto& stream : r.elements)
      if (stream.is_array() && stream.elements.size() == 2) {
        auto fresh = parse_entries(stream.elements[1], false);
        out.insert(out.end(), fresh.begin(), fresh.end());
      }
  return out;
}

Begin JobQueue::begin(Job& job, const std::string& consumer) {
  Value v = conn_.eval(script(kBegin),
                       {cfg_.prefix + ":result:" + job.id, cfg_.prefix + ":lock:" + job.id, k_attempts_,
                        k_jobs_, k_dead_},
                       {job.id, consumer, std::to_string(cfg_.claim_idle_ms), std::to_string(cfg_.max_attempts),
                        job.entry_id, cfg_.group, job.kind, job.payload, std::to_string(job.enqueued_ms)});
  if (!v.is_array() || v.elements.size() != 2) throw RedisError("redis.protocol", "unexpected begin reply");
  job.attempt = static_cast<int>(v.elements[1].as_int());
  const std::string& what = v.elements[0].str;
  if (what == "run") return Begin::kRun;
  if (what == "done") return Begin::kAlreadyDone;
  if (what == "busy") return Begin::kBusy;
  return Begin::kDead;
}

void JobQueue::touch(const Job& job, const std::string& consumer) {
  conn_.eval(script(kTouch), {cfg_.prefix + ":lock:" + job.id, k_jobs_},
             {consumer, std::to_string(cfg_.claim_idle_ms), cfg_.group, job.entry_id});
}

bool JobQueue::complete(const Job& job, const std::string& consumer, const std::string& result_json) {
  Value v = conn_.eval(script(kComplete),
                       {cfg_.prefix + ":result:" + job.id, cfg_.prefix + ":lock:" + job.id, k_attempts_,
                        k_jobs_, k_results_},
                       {job.id, consumer, result_json, std::to_string(cfg_.result_ttl_s), job.entry_id,
                        cfg_.group, job.kind, std::to_string(job.attempt), std::to_string(cfg_.results_maxlen),
                        std::to_string(job.enqueued_ms)});
  return v.integer == 1;
}

double JobQueue::retry_delay_s(int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double d = std::min(cfg_.retry_max_s, cfg_.retry_base_s * std::pow(2.0, std::max(0, attempt - 1)));
  double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  return std::max(0.0, d * (1.0 - std::clamp(cfg_.retry_jitter, 0.0, 1.0) * u));
}

std::string JobQueue::fail(const Job& job, const std::string& consumer, const std::string& error_json,
                           bool retryable) {
  long long delay_ms = std::llround(retry_delay_s(std::max(1, job.attempt)) * 1000.0);
  Value v = conn_.eval(script(kFail),
                       {cfg_.prefix + ":lock:" + job.id, k_attempts_, k_jobs_, k_dead_, k_delayed_, k_results_},
                       {job.id, consumer, error_json, retryable ? "1" : "0", std::to_string(cfg_.max_attempts),
                        job.entry_id, cfg_.group, job.kind, job.payload, std::to_string(job.enqueued_ms),
                        std::to_string(delay_ms), std::to_string(cfg_.results_maxlen)});
  return v.str;
}

std::optional<std::string> JobQueue::result(const std::string& id) {
  Value v = conn_.command({"GET", cfg_.prefix + ":result:" + id});
  if (v.type != Value::Type::kString) return std::nullopt;
  return v.str;
}

std::vector<std::pair<std::string, std::map<std::string, std::string>>> JobQueue::results(
    const std::string& after_id, int count, long long block_ms) {
  std::vector<std::string> cmd{"XREAD", "COUNT", std::to_string(std::max(1, count))};
  if (block_ms > 0) {
    cmd.push_back("BLOCK");
    cmd.push_back(std::to_string(block_ms));
  }
  cmd.insert(cmd.end(), {"STREAMS", k_results_, after_id.empty() ? "0" : after_id});
  Value r = block_.command_raw(cmd, block_ms > 0 ? static_cast<double>(block_ms) / 1000.0 : 0);
  if (r.type == Value::Type::kError) throw RedisError("redis.reply", "XREAD: " + r.str);
  if (r.is_array() && !r.elements.empty() && r.elements[0].elements.size() == 2)
    return entries_of(r.elements[0].elements[1]);
  return {};
}

std::vector<std::pair<std::string, std::map<std::string, std::string>>> JobQueue::dead_letters(int count) {
  return entries_of(conn_.command({"XRANGE", k_dead_, "-", "+", "COUNT", std::to_string(std::max(1, count))}));
}

QueueStats JobQueue::stats() {
  QueueStats s;
  s.depth = conn_.command({"XLEN", k_jobs_}).integer;
  s.delayed = conn_.command({"ZCARD", k_delayed_}).integer;
  s.dead = conn_.command({"XLEN", k_dead_}).integer;
  s.results = conn_.command({"XLEN", k_results_}).integer;
  Value p = conn_.command_raw({"XPENDING", k_jobs_, cfg_.group});
  if (p.is_array() && p.elements.size() >= 4) {
    s.pending = p.elements[0].integer;
    for (const auto& c : p.elements[3].elements)
      if (c.elements.size() == 2) s.pending_by_consumer[c.elements[0].str] = c.elements[1].as_int();
  }
  Value g = conn_.command_raw({"XINFO", "GROUPS", k_jobs_});
  if (g.is_array())
    for (const auto& grp : g.elements) {
      auto f = grp.elements;
      bool ours = false;
      long long consumers = 0;
      for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
        if (f[i].str == "name") ours = f[i + 1].str == cfg_.group;
        if (f[i].str == "consumers") consumers = f[i + 1].integer;
      }
      if (ours) s.consumers = consumers;
    }
  s.waiting = std::max(0LL, s.depth - s.pending);
  return s;
}

long long JobQueue::purge() {
  long long deleted = 0;
  std::string cursor = "0";
  do {
    Value v = conn_.command({"SCAN", cursor, "MATCH", glob_escape(cfg_.prefix) + ":*", "COUNT", "1000"});
    if (!v.is_array() || v.elements.size() != 2) throw RedisError("redis.protocol", "unexpected SCAN reply");
    cursor = v.elements[0].str;
    std::vector<std::string> del{"DEL"};
    for (const auto& k : v.elements[1].elements) del.push_back(k.str);
    if (del.size() > 1) deleted += conn_.command(del).integer;
  } while (cursor != "0");
  return deleted;
}

}  // namespace dte::redis
