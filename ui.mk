# The status page in a real browser (e2e/statuspage_test.go), included by
# the Makefile. Headless Chromium renders /debug/ of the built sidecar.

.PHONY: test-ui ui-deps

## ui-deps: install Chromium (Debian's package chromium) with apt-get when
##      /usr/bin/chromium is missing.
ui-deps:
	@test -x /usr/bin/chromium || { \
		echo "installing chromium with apt-get (the status-page test renders /debug/ in headless Chromium)"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		if [ -n "$$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then \
			echo "chromium is missing: run this as root, or install sudo" >&2; exit 1; fi; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@/usr/bin/chromium --version

## test-ui: the status page /debug/ rendered by headless Chromium after load,
##      its numbers checked against /metrics (fails, not skips, without Chromium).
test-ui: ui-deps
	FLOODGATE_REQUIRE_CHROMIUM=1 $(GO) test -race -count=1 -run 'TestStatusPageInBrowser' -v ./e2e/...
