// shipping: a Node.js service with no txtoken in it. nginx in front of it asks `txtoken forward-auth` (hop mode)
// whether each request may pass; what reaches this code was verified, and the verified context arrives in the
// Txn-Id, Txn-Sub, Txn-Scope, Txn-Requester, Txn-Tctx and Txn-Rctx headers. It reports its hop to the viewer.
// Usage: node shipping_app.js PORT COLLECTOR_URL
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');

const [port, collector] = process.argv.slice(2);

function report(hop) {
  const body = JSON.stringify(hop);
  const request = http.request(collector, { method: 'POST', headers: { 'content-type': 'application/json' } });
  request.on('error', () => {}); // a report that cannot be delivered is dropped
  request.end(body);
}

http.createServer((req, res) => {
  const started = Date.now();
  const match = req.method === 'POST' && /^\/shipments\/([A-Za-z0-9-]+)$/.exec(req.url);
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  if (!match) {
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
    return;
  }
  const tctx = JSON.parse(req.headers['txn-tctx'] || '{}');
  const answer = { shipment_id: `s-${crypto.randomBytes(4).toString('hex')}`, order_id: tctx.order_id, carrier: 'node' };
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
  const trace = req.headers['x-demo-trace'];
  if (trace) {
    report({
      trace,
      service: 'shipping',
      from: req.headers['x-demo-from'] || null, // the calling service, as the demo's caller names itself
      protocol: 'http',
      route: `POST ${req.url}`,
      verdict: 'ok',
      status: '200',
      ms: Date.now() - started,
      at: started / 1000,
      txn: req.headers['txn-id'] || null,
      req_wl: req.headers['txn-requester'] || null,
      scope: req.headers['txn-scope'] || null,
      tctx_keys: Object.keys(tctx).sort(),
      note: 'Node.js behind nginx + txtoken forward-auth (hop mode): no txtoken inside',
    });
  }
}).listen(Number(port), '127.0.0.1');
