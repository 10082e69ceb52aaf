// Bindings of the Redis layer (dte/redis.hpp): a raw connection (tooling, tests), the job queue
// and the shared state's counters. Every call releases the GIL; jobs are dicts that
// dte_native/queue.py turns into dataclasses. RedisError reaches Python as DteError "redis.*".
#include <memory>

#include "common.hpp"
#include "dte/redis.hpp"

namespace dte_py {

namespace {

using dte::redis::Job;
using dte::redis::JobQueue;
using dte::redis::Value;

py::object to_py(const Value& v) {
  switch (v.type) {
    case Value::Type::kNil: return py::none();
    case Value::Type::kInteger: return py::int_(v.integer);
    case Value::Type::kString:
    case Value::Type::kStatus: {
      PyObject* s = PyUnicode_DecodeUTF8(v.str.data(), static_cast<Py_ssize_t>(v.str.size()), "surrogateescape");
      if (!s) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(s);
    }
    case Value::Type::kError: throw dte::redis::RedisError("redis.reply", v.str);
    case Value::Type::kArray: {
      py::list out;
      for (const auto& e : v.elements) out.append(to_py(e));
      return out;
    }
  }
  return py::none();
}

std::vector<std::string> args_of(const py::sequence& seq) {
  std::vector<std::string> out;
  for (auto item : seq) {
    if (py::isinstance<py::bytes>(item))
      out.push_back(item.cast<std::string>());
    else if (py::isinstance<py::str>(item))
      out.push_back(item.cast<std::string>());
    else
      out.push_back(py::str(item).cast<std::string>());
  }
  return out;
}

py::dict job_dict(const Job& j) {
  py::dict d;
  d["entry_id"] = j.entry_id;
  d["id"] = j.id;
  d["kind"] = j.kind;
  d["payload"] = j.payload;
  d["enqueued_ms"] = j.enqueued_ms;
  d["attempt"] = j.attempt;
  d["reclaimed"] = j.reclaimed;
  return d;
}

Job job_of(const py::dict& d) {
  Job j;
  j.entry_id = d["entry_id"].cast<std::string>();
  j.id = d["id"].cast<std::string>();
  j.kind = d["kind"].cast<std::string>();
  j.payload = d["payload"].cast<std::string>();
  j.enqueued_ms = d["enqueued_ms"].cast<long long>();
  j.attempt = d.contains("attempt") ? d["attempt"].cast<int>() : 0;
  j.reclaimed = d.contains("reclaimed") && d["reclaimed"].cast<bool>();
  return j;
}

template <typename T>
T opt(const py::dict& d, const char* key, T fallback) {
  if (!d.contains(key) || d[key].is_none()) return fallback;
  return d[key].cast<T>();
}

dte::redis::QueueConfig queue_config(const py::dict& d) {
  dte::redis::QueueConfig c;
  c.prefix = opt<std::string>(d, "prefix", c.prefix);
  c.group = opt<std::string>(d, "group", c.group);
  c.max_attempts = opt<int>(d, "max_attempts", c.max_attempts);
  c.retry_base_s = opt<double>(d, "retry_base_s", c.retry_base_s);
  c.retry_max_s = opt<double>(d, "retry_max_s", c.retry_max_s);
  c.retry_jitter = opt<double>(d, "retry_jitter", c.retry_jitter);
  c.claim_idle_ms = opt<long long>(d, "claim_idle_ms", c.claim_idle_ms);
  c.result_ttl_s = opt<long long>(d, "result_ttl_s", c.result_ttl_s);
  c.results_maxlen = opt<long long>(d, "results_maxlen", c.results_maxlen);
  return c;
}

dte::redis::Options options_of(const py::dict& d) {
  dte::redis::Options o;
  o.connect_timeout_s = opt<double>(d, "connect_timeout_s", o.connect_timeout_s);
  o.command_timeout_s = opt<double>(d, "command_timeout_s", o.command_timeout_s);
  o.connect_attempts = opt<int>(d, "connect_attempts", o.connect_attempts);
  return o;
}

py::list entries(const std::vector<std::pair<std::string, std::map<std::string, std::string>>>& es) {
  py::list out;
  for (const auto& [id, fields] : es) {
    py::dict f;
    for (const auto& [k, v] : fields) f[py::str(k)] = py::str(v);
    out.append(py::make_tuple(id, f));
  }
  return out;
}

}  // namespace

void bind_redis(py::module_& m) {
  using dte::redis::Connection;
  using dte::redis::Url;

  m.def("redis_url_parse", [](const std::string& url) {
    Url u = Url::parse(url);
    py::dict d;
    d["host"] = u.host;
    d["port"] = u.port;
    d["db"] = u.db;
    d["username"] = u.username;
    d["has_password"] = !u.password.empty();
    d["display"] = u.str();
    return d;
  });

  py::class_<Connection, std::shared_ptr<Connection>>(m, "RedisConnection")
      .def(py::init([](const std::string& url, const py::dict& options) {
             return std::make_shared<Connection>(Url::parse(url), options_of(options));
           }),
           py::arg("url"), py::arg("options") = py::dict())
      .def("command",
           [](Connection& c, const py::sequence& args) {
             auto a = args_of(args);
             Value v = nogil([&] { return c.command_raw(a); });
             return to_py(v);
           })
      .def("ping", [](Connection& c) { return nogil([&] { return c.ping(); }); })
      .def_property_readonly("url", [](Connection& c) { return c.url().str(); });

  py::class_<JobQueue, std::shared_ptr<JobQueue>>(m, "JobQueue")
      .def(py::init([](const std::string& url, const py::dict& config, const py::dict& options) {
             return std::make_shared<JobQueue>(Url::parse(url), queue_config(config), options_of(options));
           }),
           py::arg("url"), py::arg("config") = py::dict(), py::arg("options") = py::dict())
      .def("ensure_group", [](JobQueue& q) { nogil([&] { q.ensure_group(); }); })
      .def("enqueue",
           [](JobQueue& q, const std::string& kind, const std::string& payload, std::string id) {
             bool added = nogil([&] { return q.enqueue(id, kind, payload); });
             return py::make_tuple(id, added);
           },
           py::arg("kind"), py::arg("payload"), py::arg("id") = "")
      .def("fetch",
           [](JobQueue& q, const std::string& consumer, int count, long long block_ms) {
             auto jobs = nogil([&] { return q.fetch(consumer, count, block_ms); });
             py::list out;
             for (const auto& j : jobs) out.append(job_dict(j));
             return out;
           },
           py::arg("consumer"), py::arg("count") = 1, py::arg("block_ms") = 1000)
      .def("begin",
           [](JobQueue& q, const py::dict& job, const std::string& consumer) {
             Job j = job_of(job);
             auto b = nogil([&] { return q.begin(j, consumer); });
             const char* names[] = {"run", "done", "busy", "dead"};
             return py::make_tuple(names[static_cast<int>(b)], j.attempt);
           })
      .def("touch",
           [](JobQueue& q, const py::dict& job, const std::string& consumer) {
             Job j = job_of(job);
             nogil([&] { q.touch(j, consumer); });
           })
      .def("complete",
           [](JobQueue& q, const py::dict& job, const std::string& consumer, const std::string& result) {
             Job j = job_of(job);
             return nogil([&] { return q.complete(j, consumer, result); });
           })
      .def("fail",
           [](JobQueue& q, const py::dict& job, const std::string& consumer, const std::string& error,
              bool retryable) {
             Job j = job_of(job);
             return nogil([&] { return q.fail(j, consumer, error, retryable); });
           })
      .def("result",
           [](JobQueue& q, const std::string& id) -> py::object {
             auto r = nogil([&] { return q.result(id); });
             if (!r) return py::none();
             return py::str(*r);
           })
      .def("results",
           [](JobQueue& q, const std::string& after, int count, long long block_ms) {
             auto r = nogil([&] { return q.results(after, count, block_ms); });
             return entries(r);
           },
           py::arg("after") = "0", py::arg("count") = 100, py::arg("block_ms") = -1)
      .def("dead_letters",
           [](JobQueue& q, int count) {
             auto r = nogil([&] { return q.dead_letters(count); });
             return entries(r);
           },
           py::arg("count") = 100)
      .def("stats",
           [](JobQueue& q) {
             auto s = nogil([&] { return q.stats(); });
             py::dict d;
             d["depth"] = s.depth;
             d["pending"] = s.pending;
             d["waiting"] = s.waiting;
             d["delayed"] = s.delayed;
             d["dead"] = s.dead;
             d["results"] = s.results;
             d["consumers"] = s.consumers;
             d["pending_by_consumer"] = s.pending_by_consumer;
             return d;
           })
      .def("purge", [](JobQueue& q) { return nogil([&] { return q.purge(); }); });

  m.def("redis_shared_state_errors", [](const std::string& url, const std::string& prefix) {
    return dte::redis::shared_state(url, prefix)->errors();
  });
}

}  // namespace dte_py

void register_redis(pybind11::module_& m) { dte_py::bind_redis(m); }
