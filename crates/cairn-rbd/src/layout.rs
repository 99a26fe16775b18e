//! Where an image's bytes live: object names (Ceph's format 2) and striping (Ceph's
//! `Striper::file_to_extents`): the image is cut in stripe units dealt round-robin over
//! `stripe_count` objects of one object set; with the defaults (stripe unit = object size,
//! count 1) object N holds bytes `[N·object_size, (N+1)·object_size)`.

use cairn_types::{Error, Result};

pub const RBD_DIRECTORY: &str = "rbd_directory";
pub const RBD_TRASH: &str = "rbd_trash";
pub const RBD_CHILDREN: &str = "rbd_children";
pub const MIN_ORDER: u8 = 12;
pub const MAX_ORDER: u8 = 26;
pub const DEFAULT_ORDER: u8 = 22;

pub fn id_object(name: &str) -> String {
    format!("rbd_id.{name}")
}

pub fn header_object(id: &str) -> String {
    format!("rbd_header.{id}")
}

pub fn data_prefix(id: &str) -> String {
    format!("rbd_data.{id}")
}

pub fn data_object(prefix: &str, object_no: u64) -> String {
    format!("{prefix}.{object_no:016x}")
}

/// An image's striping parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub object_size: u64,
    pub stripe_unit: u64,
    pub stripe_count: u64,
}

/// A piece of an image extent inside one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectExtent {
    pub object_no: u64,
    pub offset: u64,
    pub len: u64,
    /// Where the piece starts in the image.
    pub image_offset: u64,
}

impl Layout {
    /// Checks Ceph's rules: order 12–26, the stripe unit divides the object size, count ≥ 1.
    pub fn new(order: u8, stripe_unit: u64, stripe_count: u64) -> Result<Layout> {
        if !(MIN_ORDER..=MAX_ORDER).contains(&order) {
            return Err(Error::einval(format!("order must be in the range [{MIN_ORDER}, {MAX_ORDER}]")));
        }
        let object_size = 1u64 << order;
        let stripe_unit = if stripe_unit == 0 { object_size } else { stripe_unit };
        let stripe_count = if stripe_count == 0 { 1 } else { stripe_count };
        if stripe_unit > object_size || !object_size.is_multiple_of(stripe_unit) {
            return Err(Error::einval(format!(
                "stripe unit {stripe_unit} is not a factor of the object size {object_size}"
            )));
        }
        if stripe_unit < 4096 && stripe_count > 1 {
            return Err(Error::einval("stripe unit must be at least 4096 bytes"));
        }
        Ok(Layout { object_size, stripe_unit, stripe_count })
    }

    pub fn is_fancy(&self) -> bool {
        self.stripe_unit != self.object_size || self.stripe_count != 1
    }

    /// Bytes one object set covers.
    fn set_bytes(&self) -> u64 {
        self.object_size * self.stripe_count
    }

    /// How many objects an image of `size` bytes may use.
    pub fn object_count(&self, size: u64) -> u64 {
        let sets = size.div_ceil(self.set_bytes());
        if sets == 0 {
            return 0;
        }
        // The last set may use fewer objects.
        let tail = size - (sets - 1) * self.set_bytes();
        let blocks = tail.div_ceil(self.stripe_unit);
        (sets - 1) * self.stripe_count + blocks.min(self.stripe_count)
    }

    /// The object pieces of image extent `[offset, offset+len)`, in image order.
    pub fn extents(&self, offset: u64, len: u64) -> Vec<ObjectExtent> {
        let mut out = Vec::new();
        let (su, sc) = (self.stripe_unit, self.stripe_count);
        let stripes_per_object = self.object_size / su;
        let mut pos = offset;
        let end = offset.saturating_add(len);
        while pos < end {
            let block = pos / su;
            let stripe = block / sc;
            let object_no = (stripe / stripes_per_object) * sc + block % sc;
            let in_block = pos % su;
            let obj_off = (stripe % stripes_per_object) * su + in_block;
            let piece = (su - in_block).min(end - pos);
            match out.last_mut() {
                Some(ObjectExtent { object_no: n, offset: o, len: l, image_offset: io })
                    if *n == object_no && *o + *l == obj_off && *io + *l == pos =>
                {
                    *l += piece
                }
                _ => out.push(ObjectExtent { object_no, offset: obj_off, len: piece, image_offset: pos }),
            }
            pos += piece;
        }
        out
    }

    /// The image extents object `object_no` holds (offset within the object, image offset,
    /// length), clipped to an image of `size` bytes.
    pub fn object_to_image(&self, object_no: u64, size: u64) -> Vec<(u64, u64, u64)> {
        let (su, sc) = (self.stripe_unit, self.stripe_count);
        let stripes_per_object = self.object_size / su;
        let (set, pos) = (object_no / sc, object_no % sc);
        let mut out: Vec<(u64, u64, u64)> = Vec::new();
        for s in 0..stripes_per_object {
            let stripe = set * stripes_per_object + s;
            let image_off = (stripe * sc + pos) * su;
            if image_off >= size {
                break;
            }
            let len = su.min(size - image_off);
            match out.last_mut() {
                Some((_, io, l)) if *io + *l == image_off => *l += len,
                _ => out.push((s * su, image_off, len)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_layout_is_one_object_per_object_size() {
        let l = Layout::new(22, 0, 0).unwrap();
        assert_eq!(
            l.extents((4 << 20) - 1, 2),
            vec![
                ObjectExtent { object_no: 0, offset: (4 << 20) - 1, len: 1, image_offset: (4 << 20) - 1 },
                ObjectExtent { object_no: 1, offset: 0, len: 1, image_offset: 4 << 20 },
            ]
        );
        assert_eq!(l.object_count(0), 0);
        assert_eq!(l.object_count(1), 1);
        assert_eq!(l.object_count(8 << 20), 2);
        assert_eq!(data_object("rbd_data.abc", 0x1f), "rbd_data.abc.000000000000001f");
    }

    #[test]
    fn fancy_striping_matches_cephs_striper() {
        // Ceph: stripe unit 64 KiB, count 4, object 4 MiB. Block 5 = stripe 1, position 1 →
        // object 1 at 64 KiB.
        let l = Layout::new(22, 65536, 4).unwrap();
        let e = l.extents(5 * 65536 + 10, 20);
        assert_eq!(
            e,
            vec![ObjectExtent { object_no: 1, offset: 65536 + 10, len: 20, image_offset: 5 * 65536 + 10 }]
        );
        // The second object set starts after 16 MiB.
        assert_eq!(l.extents(16 << 20, 1)[0].object_no, 4);
        assert_eq!(l.object_count(16 << 20), 4);
        assert_eq!(l.object_count((16 << 20) + 65536), 5);
    }

    #[test]
    fn bad_layouts_are_einval() {
        assert!(Layout::new(11, 0, 0).is_err());
        assert!(Layout::new(27, 0, 0).is_err());
        assert!(Layout::new(22, 3 << 20, 2).is_err());
    }

    proptest! {
        #[test]
        fn extents_and_object_to_image_agree(order in 15u8..19, su_shift in 0u32..4, sc in 1u64..5,
                                             off in 0u64..300_000, len in 0u64..200_000) {
            let object_size = 1u64 << order;
            let su = object_size >> su_shift;
            let l = Layout::new(order, su, sc).unwrap();
            let ext = l.extents(off, len);
            prop_assert_eq!(ext.iter().map(|e| e.len).sum::<u64>(), len);
            let size = off + len;
            for e in &ext {
                prop_assert!(e.offset + e.len <= object_size);
                prop_assert!(e.object_no < l.object_count(size));
                // Every byte maps back to its image offset.
                let back = l.object_to_image(e.object_no, u64::MAX);
                for b in [0, e.len - 1] {
                    let o = e.offset + b;
                    let hit = back.iter().find(|(oo, _, ll)| o >= *oo && o < oo + ll).unwrap();
                    prop_assert_eq!(hit.1 + (o - hit.0), e.image_offset + b);
                }
            }
        }
    }
}
