// Redis connection (hiredis, RAII) and the SII client's shared state on Redis.
#include "dte/redis.hpp"

#include <sys/time.h>

#include <chrono>
#include <cmath>
#include <thread>

namespace dte::redis {

namespace {

timeval to_timeval(double s) {
  timeval tv{};
  if (s < 0) s = 0;
  tv.tv_sec = static_cast<time_t>(s);
  tv.tv_usec = static_cast<suseconds_t>((s - static_cast<double>(tv.tv_sec)) * 1e6);
  return tv;
}

Value convert(const redisReply* r) {
  Value v;
  if (!r) return v;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      v.type = Value::Type::kString;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      v.type = Value::Type::kStatus;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = Value::Type::kError;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      v.type = Value::Type::kInteger;
      v.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      v.type = Value::Type::kArray;
      v.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) v.elements.push_back(convert(r->element[i]));
      break;
    default:
      break;  // nil
  }
  return v;
}

int parse_int(std::string_view s, const char* what, std::string_view url) {
  if (s.empty() || s.size() > 9) throw RedisError("redis.bad_url", std::string("bad ") + what + " in '" + std::string(url) + "'");
  int n = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      throw RedisError("redis.bad_url", std::string("bad ") + what + " in '" + std::string(url) + "'");
    n = n * 10 + (c - '0');
  }
  return n;
}

std::string ms(double s) { return std::to_string(std::max<long long>(1, std::llround(s * 1000.0))); }

// Compare-and-delete: the key goes only if it still holds ARGV[1].
constexpr const char* kDeleteIfEquals = R"(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0)";

// Breaker hash fields: s (closed|open|half), f (consecutive failures), o (opened at, ms),
// ok (successes in half-open), t (trial lease end, ms). ARGV: open_ms, trial lease ms.
constexpr const char* kBreakerAllow = R"(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 's', 'o', 't')
local s = h[1] or 'closed'
if s == 'closed' then return 1 end
if s == 'open' then
  if now - tonumber(h[2] or 0) < tonumber(ARGV[1]) then return 0 end
  redis.call('HSET', KEYS[1], 's', 'half', 'ok', 0, 't', now + tonumber(ARGV[2]))
  return 1
end
if tonumber(h[3] or 0) > now then return 0 end
redis.call('HSET', KEYS[1], 't', now + tonumber(ARGV[2]))
return 1)";

// ARGV: success (1|0), failure threshold, half-open successes needed.
constexpr const char* kBreakerRecord = R"(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HGET', KEYS[1], 's') or 'closed'
if ARGV[1] == '1' then
  if s == 'half' then
    local ok = redis.call('HINCRBY', KEYS[1], 'ok', 1)
    redis.call('HSET', KEYS[1], 't', 0)
    if ok >= tonumber(ARGV[3]) then redis.call('HSET', KEYS[1], 's', 'closed', 'f', 0) end
  elseif s == 'closed' then
    redis.call('HSET', KEYS[1], 'f', 0)
  end
else
  if s == 'half' then
    redis.call('HSET', KEYS[1], 's', 'open', 'o', now, 't', 0)
  elseif s == 'closed' then
    local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
    if f >= tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], 's', 'open', 'o', now, 'f', 0) end
  end
end
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1)";

// ARGV: open_ms. Returns closed | open | half_open as seen now.
constexpr const char* kBreakerState = R"(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 's', 'o')
local s = h[1] or 'closed'
if s == 'open' and now - tonumber(h[2] or 0) >= tonumber(ARGV[1]) then return 'half_open' end
if s == 'half' then return 'half_open' end
return s)";

// Token bucket. ARGV: rate per second, burst. Returns 0 (token taken) or the ms to wait.
constexpr const char* kRateAcquire = R"(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'n', 'ts')
local n = tonumber(h[1] or burst)
local ts = tonumber(h[2] or now)
n = math.min(burst, n + (now - ts) * rate / 1000)
local wait = 0
if n >= 1 then n = n - 1 else wait = math.ceil((1 - n) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'n', tostring(n), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait)";

}  // namespace

// ------------------------------------------------------------------------------------ Url

Url Url::parse(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  if (url.substr(0, scheme.size()) != scheme)
    throw RedisError("redis.bad_url", "Redis URL must start with redis:// ('" + std::string(url) + "')");
  Url u;
  std::string_view rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    if (auto q = db.find('?'); q != std::string_view::npos) db = db.substr(0, q);
    if (!db.empty()) u.db = parse_int(db, "database number", url);
  }
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view info = authority.substr(0, at);
    authority = authority.substr(at + 1);
    if (auto colon = info.find(':'); colon != std::string_view::npos) {
      u.username = std::string(info.substr(0, colon));
      u.password = std::string(info.substr(colon + 1));
    } else {
      u.password = std::string(info);
    }
  }
  if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    u.port = parse_int(authority.substr(colon + 1), "port", url);
    authority = authority.substr(0, colon);
  }
  if (!authority.empty()) u.host = std::string(authority);
  if (u.port <= 0 || u.port > 65535) throw RedisError("redis.bad_url", "bad port in '" + std::string(url) + "'");
  return u;
}

std::string Url::str() const {
  return "redis://" + host + ":" + std::to_string(port) + "/" + std::to_string(db);
}

long long Value::as_int() const {
  if (type == Type::kInteger) return integer;
  if (type == Type::kString || type == Type::kStatus) {
    try {
      std::size_t used = 0;
      long long n = std::stoll(str, &used);
      if (used == str.size()) return n;
    } catch (const std::exception&) {
    }
  }
  throw RedisError("redis.protocol", "expected an integer reply, got '" + str + "'");
}

// ------------------------------------------------------------------------------ Connection

Connection::Connection(Url url, Options options) : url_(std::move(url)), options_(options) {}

void Connection::connect_locked() {
  std::string last = "unknown error";
  double delay = options_.reconnect_delay_s;
  for (int attempt = 1; attempt <= std::max(1, options_.connect_attempts); ++attempt) {
    if (attempt > 1) {
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      delay *= 2;
    }
    ContextPtr c(redisConnectWithTimeout(url_.host.c_str(), url_.port, to_timeval(options_.connect_timeout_s)));
    if (!c) {
      last = "out of memory";
      continue;
    }
    if (c->err) {
      last = c->errstr;
      continue;
    }
    redisSetTimeout(c.get(), to_timeval(options_.command_timeout_s));
    auto setup = [&](std::vector<std::string> args) {
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      ReplyPtr r(static_cast<redisReply*>(
          redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
      if (!r) throw RedisError("redis.connect", "Redis " + url_.str() + ": " + c->errstr);
      if (r->type == REDIS_REPLY_ERROR)
        throw RedisError("redis.connect", "Redis " + url_.str() + ": " + std::string(r->str, r->len));
    };
    if (!url_.password.empty()) {
      if (url_.username.empty())
        setup({"AUTH", url_.password});
      else
        setup({"AUTH", url_.username, url_.password});
    }
    if (url_.db != 0) setup({"SELECT", std::to_string(url_.db)});
    ctx_ = std::move(c);
    return;
  }
  throw RedisError("redis.connect", "cannot connect to Redis at " + url_.str() + ": " + last);
}

Value Connection::command_raw(const std::vector<std::string>& args, double extra_timeout_s) {
  if (args.empty()) throw RedisError("redis.protocol", "empty Redis command");
  std::lock_guard lock(mu_);
  if (!ctx_) connect_locked();
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  if (extra_timeout_s > 0)
    redisSetTimeout(ctx_.get(), to_timeval(options_.command_timeout_s + extra_timeout_s));
  ReplyPtr r(static_cast<redisReply*>(
      redisCommandArgv(ctx_.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
  if (!r) {
    std::string err = ctx_->errstr;
    ctx_.reset();  // a broken or timed-out context is not reusable
    throw RedisError("redis.io", "Redis " + url_.str() + " " + args[0] + ": " + (err.empty() ? "I/O error" : err));
  }
  if (extra_timeout_s > 0) redisSetTimeout(ctx_.get(), to_timeval(options_.command_timeout_s));
  return convert(r.get());
}

Value Connection::command(const std::vector<std::string>& args) {
  Value v = command_raw(args);
  if (v.type == Value::Type::kError) throw RedisError("redis.reply", "Redis " + args[0] + ": " + v.str);
  return v;
}

Value Connection::eval(std::string_view script, const std::vector<std::string>& keys,
                       const std::vector<std::string>& args) {
  std::vector<std::string> cmd{"EVAL", std::string(script), std::to_string(keys.size())};
  cmd.insert(cmd.end(), keys.begin(), keys.end());
  cmd.insert(cmd.end(), args.begin(), args.end());
  return command(cmd);
}

bool Connection::ping() noexcept {
  try {
    Value v = command({"PING"});
    return v.str == "PONG";
  } catch (...) {
    return false;
  }
}

// ----------------------------------------------------------------------------- SharedState

SharedState::SharedState(Url url, std::string prefix, Options options)
    : conn_(std::move(url), options), prefix_(std::move(prefix)) {}

template <typename F, typename R>
R SharedState::guarded(F&& fn, R fallback) noexcept {
  try {
    return fn();
  } catch (...) {
    ++errors_;
    return fallback;
  }
}

std::optional<std::string> SharedState::token_get(const std::string& key) {
  return guarded(
      [&]() -> std::optional<std::string> {
        Value v = conn_.command({"GET", prefix_ + ":token:" + key});
        if (v.type != Value::Type::kString || v.str.empty()) return std::nullopt;
        return v.str;
      },
      std::optional<std::string>());
}

void SharedState::token_put(const std::string& key, const std::string& token, double ttl_s) {
  guarded([&] { return conn_.command({"SET", prefix_ + ":token:" + key, token, "PX", ms(ttl_s)}).is_nil(); }, false);
}

void SharedState::token_drop(const std::string& key, const std::string& stale) {
  guarded(
      [&] {
        if (stale.empty()) return conn_.command({"DEL", prefix_ + ":token:" + key}).integer;
        return conn_.eval(kDeleteIfEquals, {prefix_ + ":token:" + key}, {stale}).integer;
      },
      0LL);
}

bool SharedState::token_try_lock(const std::string& key, const std::string& owner, double lease_s) {
  // Unreachable store: proceed as the renewer (per-process behaviour).
  return guarded(
      [&] {
        Value v = conn_.command({"SET", prefix_ + ":tokenlock:" + key, owner, "NX", "PX", ms(lease_s)});
        return !v.is_nil();
      },
      true);
}

void SharedState::token_unlock(const std::string& key, const std::string& owner) {
  guarded([&] { return conn_.eval(kDeleteIfEquals, {prefix_ + ":tokenlock:" + key}, {owner}).integer; }, 0LL);
}

bool SharedState::breaker_allow(const std::string& endpoint, const sii::BreakerPolicy& p) {
  return guarded(
      [&] {
        return conn_.eval(kBreakerAllow, {prefix_ + ":breaker:" + endpoint},
                          {ms(p.open_seconds), ms(std::max(5.0, p.open_seconds))})
                   .integer == 1;
      },
      true);
}

void SharedState::breaker_record(const std::string& endpoint, bool success, const sii::BreakerPolicy& p) {
  guarded(
      [&] {
        return conn_.eval(kBreakerRecord, {prefix_ + ":breaker:" + endpoint},
                          {success ? "1" : "0", std::to_string(std::max(1, p.failure_threshold)),
                           std::to_string(std::max(1, p.half_open_successes))})
            .integer;
      },
      0LL);
}

sii::BreakerState SharedState::breaker_state(const std::string& endpoint, const sii::BreakerPolicy& p) {
  return guarded(
      [&] {
        Value v = conn_.eval(kBreakerState, {prefix_ + ":breaker:" + endpoint}, {ms(p.open_seconds)});
        if (v.str == "open") return sii::BreakerState::kOpen;
        if (v.str == "half_open") return sii::BreakerState::kHalfOpen;
        return sii::BreakerState::kClosed;
      },
      sii::BreakerState::kClosed);
}

double SharedState::rate_acquire(const std::string& bucket, double rate_per_s, double burst) {
  if (rate_per_s <= 0) return 0;
  return guarded(
      [&] {
        Value v = conn_.eval(kRateAcquire, {prefix_ + ":rate:" + bucket},
                             {std::to_string(rate_per_s), std::to_string(std::max(1.0, burst))});
        return static_cast<double>(v.as_int()) / 1000.0;
      },
      0.0);
}

std::shared_ptr<SharedState> shared_state(std::string_view url, std::string_view prefix) {
  static std::mutex* mu = new std::mutex();  // leaked: clients may be destroyed during exit
  static auto* registry = new std::map<std::string, std::weak_ptr<SharedState>>();
  Url u = Url::parse(url);
  std::string key = std::string(url) + "|" + std::string(prefix);
  std::lock_guard lock(*mu);
  if (auto existing = (*registry)[key].lock()) return existing;
  auto made = std::make_shared<SharedState>(u, std::string(prefix));
  (*registry)[key] = made;
  return made;
}

}  // namespace dte::redis
