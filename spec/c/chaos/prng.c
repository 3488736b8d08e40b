/* The chaos test's draws: its PRNG (splitmix64, one state a round), the
 * byte patterns its streams carry, and which action an actor takes. */
#include "chaos.h"

static uint64_t splitmix(uint64_t *s)
{
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

unsigned rnd(chaos *c, unsigned n)
{
  return n ? (unsigned)(splitmix(&c->rng) % n) : 0;
}

int chance(chaos *c, unsigned pct)
{
  return rnd(c, 100) < pct;
}

/* Mostly small, sometimes up to max: a size of 0 to 2^k - 1 bytes. */
size_t rnd_size(chaos *c, size_t max)
{
  unsigned bits = rnd(c, 21);
  size_t n = (size_t)(splitmix(&c->rng) & ((1ull << bits) - 1));
  return n > max ? max : n;
}

/* Byte o of stream sid: never MARKER. */
unsigned char pat(uint32_t sid, uint64_t o)
{
  uint64_t z = ((uint64_t)sid << 44) ^ o;
  z *= 0x9E3779B97F4A7C15ull;
  z ^= z >> 29;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 32;
  return (unsigned char)(z % 255);
}

void pat_fill(unsigned char *b, size_t n, uint32_t sid, uint64_t o)
{
  size_t i;
  for (i = 0; i < n; i++)
    b[i] = pat(sid, o + i);
}

/* per mille; the rest does nothing */
static const unsigned weights[A_COUNT] = {
  230, 60, 15, 50, 80, 12, 4, 2, 30, 40, 2, 2, 1, 1, 25, 40, 30, 15, 60,
  3, 12, 12
};

int pick(chaos *c)
{
  unsigned r = rnd(c, 1000), i;
  for (i = 0; i < A_COUNT; i++) {
    if (r < weights[i])
      return (int)i;
    r -= weights[i];
  }
  return -1;
}
