"""mobikectl: keeps a road warrior's IPsec VPN on the best working uplink.

It follows charon over VICI, watches the laptop over netlink, probes every uplink and
steers charon's MOBIKE through routing. See README.md and docs/interfaces.md.
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
