import Fastify from 'fastify'
import { deadline } from 'fastify-streamline'
const app = Fastify({ logger: false })
const v = process.env.V
if (v === 'deadline') await app.register(deadline)
if (v === 'req') app.addHook('onRoute', (r) => { r.onRequest = [(q, p, d) => d()] })
if (v === 'reqsend') app.addHook('onRoute', (r) => { r.onRequest = [(q, p, d) => d()]; r.onSend = [(q, p, pl, d) => d(null, pl)] })
if (v === 'timer') app.addHook('onRoute', (r) => { r.onRequest = [(q, p, d) => { const t = setTimeout(() => {}, 15000); p.raw.once('close', () => clearTimeout(t)); d() }] })
app.get('/', async () => ({ hello: 'world' }))
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
