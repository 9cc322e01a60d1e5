// main() for kernel tests: move into a private network namespace first (or refuse), then run
// GoogleTest. Nothing else may run before enterPrivateNetns(): no threads, no sockets.
#include "tests/kernel/private_netns.h"

int main(int argc, char** argv) {
  if (!bulkhead::test::enterPrivateNetns()) return 1;
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
