"""Gateway → cloud uplink: the topic tree and payload codec (pure), and the MQTT session."""
