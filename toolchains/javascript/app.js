// The toolchain check's handler in JavaScript, built by componentize-js: a
// service-worker style `fetch` event, which it wires to
// wasi:http/incoming-handler.

const TEXT = { 'content-type': 'text/plain; charset=utf-8' };

async function handle(request) {
  const path = new URL(request.url).pathname;
  if (request.method === 'POST' && path === '/echo') {
    // Read the whole request body (the guest streams it in), send it back.
    return new Response(await request.arrayBuffer());
  }
  if (request.method !== 'GET') {
    return new Response(null, { status: 405, headers: { allow: 'GET, POST' } });
  }
  const raw = path.slice(1);
  if (raw === '') {
    return new Response('Hello from JavaScript!', { headers: TEXT });
  }
  let name;
  try {
    name = decodeURIComponent(raw);
  } catch {
    name = raw; // not valid percent-encoded UTF-8: keep it as sent
  }
  return new Response(`Hello from JavaScript, ${name}!`, { headers: TEXT });
}

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));
