// The core's thread pool: one per process, sized from the machine. Work items are pure.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace dte {

class ThreadPool {
 public:
  explicit ThreadPool(unsigned threads = 0);  // 0: hardware concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  static ThreadPool& shared();
  unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()); }

  template <typename F>
  auto submit(F&& fn) -> std::future<std::invoke_result_t<F>> {
    using R = std::invoke_result_t<F>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    auto fut = task->get_future();
    {
      std::lock_guard lock(mu_);
      queue_.emplace_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return fut;
  }

 private:
  void run();
  std::vector<std::thread> workers_;
  std::deque<std::function<void()>> queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

// Runs fn(i) for i in [0, n) on the pool with at most `threads` in flight (0 = pool size) and
// returns the results in order. An exception in one item is captured per item by the caller's fn.
template <typename F>
auto parallel_map(std::size_t n, F fn, unsigned threads = 0)
    -> std::vector<std::invoke_result_t<F, std::size_t>> {
  using R = std::invoke_result_t<F, std::size_t>;
  auto& pool = ThreadPool::shared();
  unsigned t = threads ? threads : pool.size();
  if (t == 0) t = 1;
  std::vector<R> out(n);
  std::vector<std::future<void>> futs;
  std::atomic<std::size_t> next{0};
  for (unsigned w = 0; w < t && w < n; ++w) {
    futs.push_back(pool.submit([&] {
      for (std::size_t i = next++; i < n; i = next++) out[i] = fn(i);
    }));
  }
  for (auto& f : futs) f.get();
  return out;
}

}  // namespace dte
