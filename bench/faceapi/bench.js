// face-api 1.7.15 on tfjs 4.22 with the wasm backend, timed on the photos bench_face uses, so
// bench/face.sh can put both side by side in one report. Prints Markdown on stdout.
//
// usage: node bench.js [--images DIR] [--models DIR] [--runs N]
//   --images  PNG photos (default ../../tests/data/faces/images)
//   --models  face-api model directory (default ../../models: the same files Vigil loads)
//   --runs    timed runs per measurement after 2 warm-ups (default 10)
//   --summary FILE  also writes "faceapi KEY - WALL_MS CPU_MS BEST_CPU_MS" lines (tab-separated,
//             medians) for bench/face.sh's side-by-side table
//
// Timings: wall-clock median and the process CPU time per call (process.cpuUsage: on a shared
// machine the wall clock also counts time other processes held the core; the CPU time is the
// comparable figure to bench_face's thread CPU time, though it also counts node's own threads).
'use strict';

const fs = require('fs');
const path = require('path');
const os = require('os');
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { PNG } = require('pngjs');

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const IMAGES = arg('--images', path.join(__dirname, '../../tests/data/faces/images'));
const MODELS = arg('--models', path.join(__dirname, '../../models'));
const RUNS = Math.max(3, parseInt(arg('--runs', '10'), 10));
const WARMUP = 2;
const SUMMARY = arg('--summary', null);
const summary = [];

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const p95 = (a) => [...a].sort((x, y) => x - y)[Math.round(0.95 * (a.length - 1))];

function loadPng(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  const rgb = new Uint8Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    rgb[3 * i] = png.data[4 * i];
    rgb[3 * i + 1] = png.data[4 * i + 1];
    rgb[3 * i + 2] = png.data[4 * i + 2];
  }
  return { w: png.width, h: png.height, rgb };
}

// Times `runs` calls of async fn after WARMUP untimed ones: {wall: [ms], cpu: [ms]}.
async function time(fn, runs) {
  for (let k = 0; k < WARMUP; k++) await fn();
  const wall = [];
  const cpu = [];
  for (let k = 0; k < runs; k++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await fn();
    wall.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e3);
  }
  return { wall, cpu };
}

function row(key, what, t, extra) {
  const best = Math.min(...t.cpu);
  console.log(`| ${what} | ${median(t.wall).toFixed(2)} | ${p95(t.wall).toFixed(2)} | ` +
              `${median(t.cpu).toFixed(2)} | ${best.toFixed(2)} | ${extra || ''} |`);
  summary.push(['faceapi', key, '-', median(t.wall).toFixed(3), median(t.cpu).toFixed(3), best.toFixed(3)].join('\t'));
}

async function main() {
  wasm.setWasmPaths(path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), '/'));
  await faceapi.tf.setBackend('wasm');
  await faceapi.tf.ready();
  const ftf = faceapi.tf;
  const simd = await ftf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = await ftf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  await faceapi.nets.tinyFaceDetector.loadFromDisk(MODELS);
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(MODELS);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(MODELS);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(MODELS);

  console.log(`face-api ${faceapi.version}, tfjs ${ftf.version_core || tf.version.tfjs}, backend ` +
              `${ftf.getBackend()} (SIMD ${simd}, multithread ${threads}), node ${process.version}, ` +
              `${os.cpus().length} CPUs, load average ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}.`);
  console.log('');

  const files = fs.readdirSync(IMAGES).filter((f) => f.endsWith('.png')).sort();
  const photos = files.map((f) => ({ name: f, ...loadPng(path.join(IMAGES, f)) }));
  const tinyOpts = new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.5 });
  const tiny320 = new faceapi.TinyFaceDetectorOptions({ inputSize: 320, scoreThreshold: 0.5 });
  const ssdOpts = new faceapi.SsdMobilenetv1Options({ minConfidence: 0.5, maxResults: 100 });

  // The reference face: the first photo (by name) with a face, as bench_face chooses it.
  let ref = null;
  for (const p of photos) {
    const t = ftf.tensor3d(p.rgb, [p.h, p.w, 3], 'int32');
    const dets = await faceapi.nets.tinyFaceDetector.locateFaces(t, tinyOpts);
    if (dets.length) {
      ref = { photo: p, t, det: dets[0] };
      break;
    }
    t.dispose();
  }
  if (!ref) throw new Error(`no face in ${IMAGES}`);

  console.log(`## face-api, one call at a time (${RUNS} runs after ${WARMUP} warm-ups; ` +
              `reference face from ${ref.photo.name})`);
  console.log('');
  console.log('| what | median ms | P95 ms | median CPU ms | best CPU ms | note |');
  console.log('|---|---|---|---|---|---|');
  const t = ref.t;
  row('tiny320', 'tiny detector 320 (locateFaces)', await time(() => faceapi.nets.tinyFaceDetector.locateFaces(t, tiny320), RUNS),
      'includes resize and decoding');
  row('tiny416', 'tiny detector 416 (locateFaces)', await time(() => faceapi.nets.tinyFaceDetector.locateFaces(t, tinyOpts), RUNS),
      'includes resize and decoding');
  row('ssd', 'SSD MobileNet v1 (locateFaces)', await time(() => faceapi.nets.ssdMobilenetv1.locateFaces(t, ssdOpts), RUNS),
      'includes resize and decoding');
  const [faceT] = await faceapi.extractFaceTensors(t, [ref.det]);
  row('landmarks', '68 landmarks (detectLandmarks)', await time(async () => {
    const lm = await faceapi.nets.faceLandmark68Net.detectLandmarks(faceT);
    return lm;
  }, RUNS), 'one face crop');
  const lm = (await faceapi.nets.faceLandmark68Net.detectLandmarks(faceT)).shiftBy(ref.det.box.x, ref.det.box.y);
  const rect = lm.align(null, { useDlibAlignment: true });
  const [chip] = await faceapi.extractFaceTensors(t, [rect]);
  row('descriptor', 'descriptor (computeFaceDescriptor)', await time(async () => {
    const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(chip);
    return d;
  }, RUNS), 'one aligned chip');
  ftf.dispose([faceT, chip]);
  console.log('');

  // The whole pipeline per photo (tiny 416, f32 throughout: face-api has no other precision).
  console.log(`## face-api whole pipeline (detectAllFaces(tiny 416).withFaceLandmarks()` +
              `.withFaceDescriptors()), ${photos.length} photos, median of 3 runs each`);
  console.log('');
  let sum = 0;
  let sumCpu = 0;
  let worst = 0;
  let faces = 0;
  for (const p of photos) {
    const pt = ftf.tensor3d(p.rgb, [p.h, p.w, 3], 'int32');
    let n = 0;
    const tm = await time(async () => {
      const r = await faceapi.detectAllFaces(pt, tinyOpts).withFaceLandmarks().withFaceDescriptors();
      n = r.length;
    }, 3);
    faces += n;
    sum += median(tm.wall);
    sumCpu += median(tm.cpu);
    worst = Math.max(worst, median(tm.wall));
    pt.dispose();
  }
  console.log('| detector | faces | median ms per photo (sum / photos) | CPU ms per photo | slowest photo ms |');
  console.log('|---|---|---|---|---|');
  console.log(`| tiny 416 | ${faces} | ${(sum / photos.length).toFixed(1)} | ${(sumCpu / photos.length).toFixed(1)} | ${worst.toFixed(1)} |`);
  console.log('');
  summary.push(['faceapi', 'pipeline', '-', (sum / photos.length).toFixed(3), (sumCpu / photos.length).toFixed(3), '-'].join('\t'));
  if (SUMMARY) fs.writeFileSync(SUMMARY, `${summary.join('\n')}\n`);
  ref.t.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
