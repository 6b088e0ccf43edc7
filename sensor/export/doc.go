// Package export sends the sensor's flows, with their application labels,
// as IPFIX (RFC 7011) over UDP to one or more collectors: ours, or any
// IPFIX collector, nProbe and ntop tooling included.
//
// The sensor calls Exporter.Export per finished flow; Export copies the
// flow into a bounded queue and never blocks (a full queue is a counted
// drop), so a slow or absent collector never stalls packet processing. One
// writer goroutine packs flows into messages with an Encoder (the pure
// encoding half, no I/O) and writes each message to every collector.
//
// # Records
//
// One template per address family (sourceIPv4Address 8 / sourceIPv6Address
// 27, ...), so a record never carries an unused address. By default a flow
// is one RFC 5103 biflow record: the client is the source, client→server
// counters are octetDeltaCount/packetDeltaCount, server→client ones the
// reverse elements (enterprise 29305), with tcpControlBits per direction.
// Config.Unidirectional sends two plain records instead, for collectors
// that ignore reverse elements; the server→client record is left out when
// the server sent nothing. Both record kinds carry flowStartMilliseconds
// and flowEndMilliseconds, vlanId (and postVlanId, the same: a mirror
// port sees one VLAN both ways, and a collector that swaps ingress and
// egress VLANs for a biflow's reverse direction keeps it in both rows),
// flowEndReason, applicationId (95), applicationName (96) and
// applicationCategoryName (372).
//
// applicationId follows RFC 6759: a classification engine id, then the
// selector (Flow.ApplicationID, 4 bytes). The engine is 13, PANA-L7
// ("proprietary layer 7 definition ... used when the application registry
// is owned by the Exporter manufacturer"): the ids are the sensor's own
// numbering. 20 (PANA-L7-PEN) would claim someone else's registry and
// needs their enterprise number; 22 (ntop nDPI) claims nDPI's protocol
// ids, which a label such as TLS.YouTube (two nDPI ids) is not, so it is
// only available as an option for a sensor that does use nDPI ids.
//
// With Config.Ntop (the default) records also carry nProbe's elements
// under ntop's enterprise 35632: L7_PROTO_NAME (119) and
// L7_PROTO_CATEGORY (501) duplicate 96 and 372 for tools that read only
// nProbe's, TLS_SERVER_NAME (188) holds the SNI or HTTP Host, DNS_QUERY
// (205) the query name, and L7_CONFIDENCE (560) the label's confidence.
// IANA has no element for the last three. nProbe documents L7_CONFIDENCE
// as one byte, "nDPI confidence": nDPI's ndpi_confidence_t, which we fill
// with the numbers of nDPI 4.8+ (see Confidence.ndpiConfidence). Our
// collector reads it to store a label as dpi rather than exporter.
//
// Strings are variable-length fields (RFC 7011 §7: a 1-byte length, or 255
// and a 2-byte length from 255 bytes on), cut at a UTF-8 boundary to
// Config.MaxLabelLen / MaxNameLen. The bounds are checked against the MTU
// at configuration time, so the largest possible record always fits in a
// message and no flow is ever unencodable (the two records of a
// unidirectional flow may then need a message each: Encoder.AddRecord).
//
// # Messages
//
// A message holds as many records as fit in Config.MTU bytes (default
// 1400), consecutive records of one template sharing a data set. It is
// sent when the next flow does not fit, or once it has waited
// FlushInterval (checked every half interval), stamped with the time it
// leaves. The sequence number is the count of data records sent before
// the message, modulo 2^32 (RFC 7011 §3.1), advanced also by records
// dropped on a full queue so collectors see the loss as a gap (§10.2.2:
// sequence numbers must reflect discarded records). Templates go out at start, then at the front of
// the next message every TemplateInterval or TemplateEveryMessages
// messages, and alone when the exporter is idle: over UDP a template is
// lost with its datagram, and a collector that restarts needs them again.
// Template ids differ per layout (family, biflow or not, ntop or not) so
// a collector never applies a stale template to a new layout.
//
// # Costs
//
// The writer reuses one message buffer, the queue holds flow values (its
// strings are shared, not copied) and the sockets are connected, so the
// steady state allocates nothing: see BenchmarkEncode and
// BenchmarkExporter.
//
// # Metrics
//
// flowlens_sensor_export_messages_total{collector},
// flowlens_sensor_export_bytes_total{collector},
// flowlens_sensor_export_send_errors_total{collector},
// flowlens_sensor_export_records_total,
// flowlens_sensor_export_flows_total,
// flowlens_sensor_export_template_sends_total,
// flowlens_sensor_export_dropped_total{reason} (queue_full, not_running,
// too_large, stopped) and flowlens_sensor_export_queue_length.
package export
