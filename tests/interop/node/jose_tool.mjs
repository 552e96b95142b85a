// Node jose for txtoken's interoperability tests: one JSON request on stdin, one JSON answer on stdout.
//   {"op": "sign", "jwk": <private JWK>, "header": {...}, "payload": {...}}  ->  {"token": "<compact JWS>"}
//   {"op": "verify", "token": "...", "jwks": {...}, "audience": "...", "typ": "...", "now": <seconds>}
//       ->  {"payload": {...}, "header": {...}}  or  {"error": "<jose error code>"}
import { CompactSign, createLocalJWKSet, importJWK, jwtVerify } from "jose";

async function sign({ jwk, header, payload }) {
  const key = await importJWK(jwk, header.alg);
  const body = new TextEncoder().encode(JSON.stringify(payload));
  return { token: await new CompactSign(body).setProtectedHeader(header).sign(key) };
}

async function verify({ token, jwks, audience, typ, now }) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
      audience,
      typ,
      currentDate: new Date(now * 1000),
    });
    return { payload, header: protectedHeader };
  } catch (error) {
    return { error: error.code ?? error.name };
  }
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const answer = request.op === "sign" ? await sign(request) : await verify(request);
process.stdout.write(JSON.stringify(answer));
