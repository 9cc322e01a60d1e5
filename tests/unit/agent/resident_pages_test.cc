// Giving back clean file pages (agent/linux/resident_pages.h): the pure selection of mappings
// and page runs, then the real thing on this test process's own mapping of a temporary file,
// where a page written after mapping (as RELRO data is) must survive with its new bytes.
#include "agent/linux/resident_pages.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace bulkhead::agent {
namespace {

constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kFile = uint64_t{1} << 61;

TEST(ReadOnlyFileMappingsTest, KeepsOnlyFilesMappedWithoutWritePermission) {
  const std::string maps =
      "55d0c0a00000-55d0c0a10000 r--p 00000000 fe:01 123 /usr/bin/bulkhead-agent\n"
      "55d0c0a10000-55d0c0a40000 r-xp 00010000 fe:01 123 /usr/bin/bulkhead-agent\n"
      "55d0c0a40000-55d0c0a42000 rw-p 00040000 fe:01 123 /usr/bin/bulkhead-agent\n"
      "55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]\n"
      "7f0000000000-7f0000001000 r-xp 00000000 00:00 0 \n"
      "7f0000002000-7f0000004000 r-xp 00000000 fe:01 9 /opt/old lib.so (deleted)\n"
      "7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]\n"
      "not a maps line\n"
      "7f0000005000-7f0000004000 r--p 00000000 fe:01 9 /backwards\n";
  EXPECT_EQ(readOnlyFileMappings(maps),
            (std::vector<PageRange>{
                {0x55d0c0a00000, 0x10000}, {0x55d0c0a10000, 0x30000}, {0x7f0000002000, 0x2000}}));
}

TEST(CleanFilePageRunsTest, JoinsPresentFilePagesAndSkipsCopiesAndAbsentPages) {
  const PageRange mapping{0x10000, size_t{6} * 0x1000};
  // file, file, private copy (present, not file), absent, file, file
  const std::vector<uint64_t> entries{kPresent | kFile, kPresent | kFile,     kPresent, 0,
                                      kPresent | kFile, kPresent | kFile | 42};
  EXPECT_EQ(cleanFilePageRuns(mapping, entries, 0x1000),
            (std::vector<PageRange>{{0x10000, 0x2000}, {0x14000, 0x2000}}));
  // Fewer entries than pages (the read came short): only those are looked at.
  EXPECT_EQ(cleanFilePageRuns(mapping, std::span(entries).first(1), 0x1000),
            (std::vector<PageRange>{{0x10000, 0x1000}}));
  // A file bit without the present bit is not a resident page.
  EXPECT_TRUE(cleanFilePageRuns(mapping, std::vector<uint64_t>{kFile}, 0x1000).empty());
}

// This process's pagemap entry for the page at `p`.
uint64_t pagemapEntry(const void* p) {
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << std::strerror(errno);
  uint64_t e = 0;
  const auto off = static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / page * sizeof e);
  EXPECT_EQ(::pread(fd, &e, sizeof e, off), static_cast<ssize_t>(sizeof e));
  ::close(fd);
  return e;
}

TEST(DropCleanFilePagesTest, UnmapsCleanPagesOfThisProcessAndKeepsWrittenCopies) {
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  constexpr size_t kPages = 8;
  char path[] = "/tmp/resident_pages_test.XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::unlink(path);
  std::string bytes(kPages * page, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>('a' + i / page);
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));

  // Mapped private and writable, every page read, page 3 written, then made read-only: what
  // the dynamic loader does to relocated data before RELRO protects it.
  void* mem = ::mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ASSERT_NE(mem, MAP_FAILED) << std::strerror(errno);
  ::close(fd);
  auto* p = static_cast<volatile char*>(mem);
  int sum = 0;
  for (size_t i = 0; i < kPages; ++i) sum += p[i * page];
  EXPECT_EQ(sum, 'a' + 'b' + 'c' + 'd' + 'e' + 'f' + 'g' + 'h');
  p[3 * page] = 'X';
  ASSERT_EQ(::mprotect(mem, bytes.size(), PROT_READ), 0) << std::strerror(errno);
  ASSERT_NE(pagemapEntry(const_cast<char*>(p)) & kPresent, 0u);
  ASSERT_EQ(pagemapEntry(const_cast<char*>(p + 3 * page)) & kFile, 0u) << "page 3 is a copy";

  auto trim = dropCleanFilePages();
  ASSERT_TRUE(trim.ok()) << trim.status();
  EXPECT_GE(trim->bytes, (kPages - 1) * page);
  EXPECT_GE(trim->kept_bytes, page);
  EXPECT_GE(trim->mappings, 2);  // this mapping and the test program's own code at least

  for (size_t i = 0; i < kPages; ++i) {
    const char* at = const_cast<char*>(p + i * page);
    if (i == 3) {
      EXPECT_NE(pagemapEntry(at) & kPresent, 0u) << "the written copy stays mapped";
    } else {
      EXPECT_EQ(pagemapEntry(at) & kPresent, 0u) << "clean page " << i << " still mapped";
    }
  }
  // Every page reads what it held: the file's bytes back from the page cache, and the copy.
  for (size_t i = 0; i < kPages; ++i) {
    EXPECT_EQ(p[i * page], i == 3 ? 'X' : static_cast<char>('a' + i)) << "page " << i;
    EXPECT_EQ(p[i * page + page - 1], static_cast<char>('a' + i)) << "page " << i;
  }
  ::munmap(mem, bytes.size());
}

}  // namespace
}  // namespace bulkhead::agent
