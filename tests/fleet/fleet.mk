# tests/fleet: the fleet test, three echomaster hosts in network namespaces
# behind the real HAProxy and nginx stream from the distribution's packages
# (tests/fleet/fleet.py says what it shows). Included by the top Makefile.
#
#   make check-fleet   as root: installs haproxy, nginx's stream module,
#                      iproute2 and python3 if missing (packaging/build-deps.sh
#                      fleet, with service starts held back), builds, runs
#                      every scenario; about half a minute
#
# Knobs: FLEET_ONLY="whoami kill" (a subset), FLEET_KEEP=1 (keep the run
# directory with the configurations and logs), FLEET_ALLOW_SKIP=1 (a binary
# without some feature passes with those scenarios skipped).

FLEET_ONLY ?=

.PHONY: check-fleet
check-fleet: deps
	$(Q)tests/fleet/deps.sh
	$(Q)$(MAKE) --no-print-directory $(if $(Q),-s) $(BUILD)/echomaster
	$(Q)timeout 300 python3 tests/fleet/fleet.py $(BUILD)/echomaster $(FLEET_ONLY)
