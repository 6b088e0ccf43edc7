// Package policy reads the user's policy file: host pools, application
// category overrides, and the security settings (rules, service map
// learning, DNS checks, sanctioned SaaS, alert delivery) that the
// detection code evaluates. It parses and validates the file, answers
// the per-flow lookups (Policy.Pool, Policy.PoolFor, Policy.Category)
// without allocating, and reloads the file live (Watcher).
//
// # File format
//
// One YAML document; every section is optional, and an empty or missing
// file is an empty policy that matches nothing. Unknown keys are errors,
// and any error rejects the whole file: Parse returns all of them, each
// "file:line:column: message". YAML anchors, aliases and merge keys
// ("<<: *base") may be used. testdata/example.yaml is a commented example.
//
//	version: 1                  # optional; the only version
//
//	pools:                      # host pools: name -> members
//	  iot: [10.0.20.0/24]       # a list of CIDRs, IPv4 or IPv6; an address is a /32 or /128
//	  servers: [10.0.1.10, 2001:db8::/64]
//	  cameras:                  # or a mapping:
//	    cidrs: [10.0.30.0/24]   #   these prefixes, only on these VLANs when vlans is given
//	    vlans: [30]             #   without cidrs: every host on these VLANs
//	    macs: ["aa:bb:cc:dd:ee:ff"]  # these hosts, by MAC, wherever they are
//
// Pool names are letters, digits, "_", "." and "-"; any, external,
// internal and default are reserved. The longest prefix wins, across
// pools; the same prefix in two pools is an error, nested prefixes are
// not. Policy.Pool uses the prefixes not limited to VLANs. Policy.PoolFor
// takes the VLAN and MAC when the flow has them: a listed MAC wins, then
// the prefixes of that VLAN (a VLAN-wide pool being the shortest), then
// the other prefixes. Prefixes may not have host bits set (10.0.20.5/24
// is an error naming 10.0.20.0/24), and IPv4-mapped IPv6 addresses are
// IPv4 addresses. Quote IPv6 values that start with a colon ('::/0',
// '::1'): YAML reads an unquoted one as syntax.
//
//	categories:                 # application label -> category override
//	  TLS.Dropbox: Cloud        # the exact label first,
//	  Intranet: Collaborative   # then the application part after the dot,
//	  TLS: Web                  # then the master protocol before it
//
// Labels and categories are nDPI's names, as in schema.Flow's Protocol
// and AppCategory ("TLS.YouTube", "SSH"; "Cloud", "RemoteAccess"); they
// are compared exactly, case included.
//
//	rules:                      # what a pool must not do (policy, lateral movement)
//	  - name: iot-no-remote-access   # required, unique
//	    description: cameras are managed from the cloud only   # optional
//	    from: iot               # client side: pool(s), any (default), external, internal
//	    to: servers             # server side, the same
//	    categories: [RemoteAccess]     # the flow's category is one of these,
//	    protocols: [SSH, RDP, VNC, Telnet]  # or its label is (matched like a category override key)
//	    severity: high          # info, low, medium (default), high, critical
//
// A rule without categories and protocols matches every application; a
// rule that would match every flow is an error. external is an address in
// no pool and not private, loopback, link-local or multicast; internal the
// others. A protocol entry "Dropbox" matches "Dropbox", "TLS.Dropbox" and
// "QUIC.Dropbox"; "TLS.Dropbox" only itself; "TLS" every "TLS.*".
//
//	learn:                      # service map, as ntopng's: (client pool, server, protocol)
//	  enabled: false            # edges are learned for period, then a new edge alerts
//	  period: 24h               # Go durations, or days: 7d (default 24h)
//	  pools: [iot]              # client pools watched; empty: every client
//	  max_edges: 100000         # bound on learned edges
//	  severity: medium
//
//	dns:
//	  allowed_resolvers: [10.0.1.53, 1.1.1.1]  # DNS, DoH and DoT elsewhere alerts; empty: off
//	  window: 10m               # thresholds per client and registered domain within it:
//	  unique_subdomains: 100    #   distinct names below the domain
//	  query_bytes: 10000        #   bytes of query names
//	  label_length: 48          #   longest label (at most 63)
//	  entropy: 3.5              #   bits per character of the labels (at most 8)
//	  txt_null_share: 0.5       #   share of TXT and NULL queries (0 to 1)
//	  nxdomain_ratio: 0.5       #   share of NXDOMAIN answers (0 to 1)
//	  min_queries: 100          #   queries before the shares and the entropy count
//	  severity: medium
//
// The values shown are the defaults; 0 disables a threshold, and negative
// values are errors.
//
//	saas:                       # unsanctioned SaaS, per client pool
//	  default:                  # for clients whose pool has no entry (or in no pool)
//	    deny: [TLS.Dropbox]
//	  staff:
//	    allow: [Microsoft365, OneDrive]         # exceptions to deny
//	    deny: [Dropbox, category:Cloud]         # applications, category:NAME, or "*"
//	    severity: medium
//
// An application is unsanctioned when it is in deny and not in allow; a
// pool's entry replaces default, it is not merged with it (share lists
// with anchors). deny: ["*"] turns allow into an allow list.
//
//	alerts:
//	  dedup_window: 10m         # the same alert at most once per window (0: every time)
//	  min_severity: info        # alerts below are dropped
//	  webhook: https://example.invalid/hook   # optional, http or https
//	  syslog: udp://127.0.0.1:514             # optional: udp://, tcp:// (port 514 by default) or unix:///dev/log
//
// # Limits
//
// A file is at most MaxFileSize bytes. yaml.v3 limits nesting depth, but
// does not bound alias expansion when it hands out a yaml.Node tree, as
// here; the parser counts the nodes it visits, aliases followed, and
// rejects a file that expands past a few million.
package policy
