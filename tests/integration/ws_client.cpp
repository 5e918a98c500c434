// Test WebSocket client.
