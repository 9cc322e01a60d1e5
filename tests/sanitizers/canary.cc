// A program with one deliberate bug per sanitizer, chosen by argv[1]. Each CTest test of
// tests/sanitizers/ runs one and expects it to FAIL: it proves that the sanitizer build finds
// that class of bug and turns it into a failed test (UBSan included: it must abort, not print
// and go on). A run that exits 0 means the sanitizer build is not doing its job.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

namespace {

// Keeps the optimiser from seeing through the bugs.
template <typename T>
T opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}

int heapOverflow() {
  char* p = new char[8];
  std::memset(p, 0, 8);
  const int v = p[opaque(8)];  // one past the end
  delete[] p;
  return v;
}

int signedOverflow() {
  const int big = opaque(std::numeric_limits<int>::max());
  return big + opaque(1);  // undefined
}

// The last pointer to it is overwritten: leaked at exit. Stored through a volatile global so
// the allocation cannot be optimised away.
void* volatile g_allocation = nullptr;
int leak() {
  g_allocation = std::malloc(opaque(size_t{64}));
  g_allocation = nullptr;
  return 0;
}

int dataRace() {
  int counter = 0;
  std::thread a([&] { ++counter; });
  std::thread b([&] { ++counter; });  // unsynchronised with a
  a.join();
  b.join();
  return counter == 2 ? 0 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* bug = argc > 1 ? argv[1] : "";
  int result = 0;
  if (std::strcmp(bug, "heap-overflow") == 0) {
    result = heapOverflow();
  } else if (std::strcmp(bug, "signed-overflow") == 0) {
    result = signedOverflow();
  } else if (std::strcmp(bug, "leak") == 0) {
    result = leak();
  } else if (std::strcmp(bug, "data-race") == 0) {
    result = dataRace();
  } else {
    std::fprintf(stderr, "usage: %s heap-overflow|signed-overflow|leak|data-race\n", argv[0]);
    return 2;
  }
  std::printf("the bug ran without a sanitizer report (result %d)\n", result);
  return 0;
}
